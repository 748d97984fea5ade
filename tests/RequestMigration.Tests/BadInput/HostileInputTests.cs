using System.Text;
using RequestMigration.Wire;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.BadInput;

/// <summary>
/// What a fuzzer found beyond plain malformed frames (issue 8, "Hostile input"): log injection, memory held
/// by incomplete frames, trailing JSON, protocol violations during a response, consumers that vanish
/// while a handler waits. Real TCP + TLS on 127.0.0.1, frames built by hand.
/// </summary>
public sealed class HostileInputTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly List<IAsyncDisposable> _owned = [];
    private EchoServer? _server;

    private EchoServer Server => _server ?? throw new InvalidOperationException("not started");

    public async ValueTask InitializeAsync() => _server = await EchoServer.StartAsync();

    public async ValueTask DisposeAsync()
    {
        foreach (var d in _owned)
        {
            await d.DisposeAsync();
        }

        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Control_characters_in_a_peer_supplied_path_and_request_id_are_escaped_and_capped_in_the_log()
    {
        // A newline followed by a copy of a real log line, terminal escapes (colour, window title, bell) and
        // 65 000 characters of padding: today each reaches the log as is.
        var path = "ns/none/x\n[Warning] server: rejected request 0 on tcp-1: forged\u001b[31mred\u001b[0m" + new string('p', 65_000);
        var requestId = "id\r\nforged\u001b]0;title\u0007";
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));

        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, RawConnection.RequestPayload(path, RawConnection.Json(new EchoRequest("x")), requestId)));
        var error = await conn.ReadFrameAsync();

        error.ShouldNotBeNull();
        error.Code.ShouldBe(ErrorCode.UnknownEndpoint, error.ToString());
        (await Server.Logs.WaitForAsync("rejected request", Timeout)).ShouldBeTrue(Server.Logs.Dump());
        var line = Server.Logs.Entries.Single(e => e.Message.Contains("rejected request", StringComparison.Ordinal)).Message;
        line.ShouldNotContain("\n", customMessage: line);
        line.ShouldNotContain("\r", customMessage: line);
        line.ShouldNotContain("\u001b", customMessage: line);
        line.ShouldNotContain("\u0007", customMessage: line);
        line.ShouldContain(@"rejected request id\r\nforged\u001b]0;title\u0007 on ", customMessage: line);
        line.ShouldContain(@"ns/none/x\n[Warning] server: rejected request 0 on tcp-1: forged\u001b[31mred\u001b[0m", customMessage: line);
        line.Length.ShouldBeLessThan(1_000, line);
        line.ShouldContain("chars)", customMessage: line);
    }

    [Theory]
    [InlineData("{\"text\":\"a\"} trailing")]
    [InlineData("{\"text\":\"a\"}{\"text\":\"b\"}")]
    [InlineData("{\"text\":\"a\"},")]
    public async Task A_JSON_payload_with_bytes_after_the_value_gets_BadRequest(string body)
    {
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));

        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, RawConnection.RequestPayload(EchoServer.Path, Encoding.UTF8.GetBytes(body))));
        var error = await conn.ReadFrameAsync();

        error.ShouldNotBeNull();
        error.FrameType.ShouldBe(FrameType.Error, error.ToString());
        error.Code.ShouldBe(ErrorCode.BadRequest, error.ToString());
        error.Message.ShouldContain($"cannot decode the request for endpoint '{EchoServer.Path}'");

        // Whitespace after the value is fine, and the connection goes on.
        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, RawConnection.RequestPayload(EchoServer.Path, "{\"text\":\"ok\",\"count\":1} \r\n\t"u8)));
        (await conn.ReadResponseAsync()).Select(f => f.ToString()).ShouldBe(["Data(\"ok-0\")", "End()"]);
        ShouldHaveLoggedNoErrors();
    }

    /// <summary>Bad input is expected traffic: warnings, never errors (those mean the server itself failed).</summary>
    private void ShouldHaveLoggedNoErrors() => Server.Logs.Errors.ShouldBeEmpty(Server.Logs.Dump());

    private async Task<T> Own<T>(Task<T> create)
        where T : IAsyncDisposable
    {
        var value = await create;
        _owned.Add(value);
        return value;
    }
}
