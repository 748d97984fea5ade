using System.Security.Authentication;
using System.Text;
using RequestMigration.Wire;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.BadInput;

/// <summary>
/// Hostile or broken peers against a real endpoint server (TCP + TLS on 127.0.0.1): each bad connection
/// gets a precise error frame or is dropped, and the server keeps serving everyone else.
/// </summary>
public sealed class BadInputTests : IAsyncLifetime
{
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(5);
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
    public async Task Garbage_instead_of_a_TLS_ClientHello_is_dropped_and_the_server_keeps_serving()
    {
        var raw = await Own(RawConnection.ConnectTcpAsync(Server.EndPoint));
        await raw.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" + new string('x', 600)));

        (await raw.WaitForCloseAsync(CloseTimeout)).ShouldBeTrue("the server must drop a peer that does not speak TLS");
        (await Server.Logs.WaitForAsync("TLS handshake with", CloseTimeout)).ShouldBeTrue(Server.Logs.Dump());
        Server.Logs.Entries.ShouldContain(e => e.Message.Contains("TLS handshake with", StringComparison.Ordinal) && e.Message.Contains("dropped", StringComparison.Ordinal), Server.Logs.Dump());

        var request = new EchoRequest("after-garbage");
        (await Server.CallAsync(request)).ShouldBe(EchoServer.Expected(request));
        ShouldHaveLoggedNoErrors();
    }

    [Fact]
    public async Task A_client_offering_another_ALPN_protocol_is_refused_during_the_handshake()
    {
        var raw = await Own(RawConnection.ConnectTcpAsync(Server.EndPoint));

        await Should.ThrowAsync<AuthenticationException>(() => raw.AuthenticateAsync("h2"));

        var request = new EchoRequest("after-alpn");
        (await Server.CallAsync(request)).ShouldBe(EchoServer.Expected(request));
    }

    [Fact]
    public async Task A_well_formed_TLS_connection_negotiates_rm1_and_streams_a_response()
    {
        // The baseline every other test deviates from: the hand-built frames really are what the server expects.
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        conn.NegotiatedProtocol.ToString().ShouldBe("rm/1");

        await conn.SendAsync(RawConnection.RequestFrame(EchoServer.Path, new EchoRequest("ok", 4)));
        var frames = await conn.ReadResponseAsync();

        frames.Select(f => f.FrameType).ShouldBe([FrameType.Data, FrameType.Data, FrameType.Data, FrameType.Data, FrameType.End]);
        frames.Take(4).Select(f => f.Text).ShouldBe(["ok-0", "ok-1", "ok-2", "ok-3"]);
        frames[^1].Payload.ShouldBeEmpty();
    }

    [Fact]
    public async Task Unknown_frame_type_gets_a_BadRequest_error_then_the_connection_closes_and_others_are_unaffected()
    {
        var healthy = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        var bad = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));

        await bad.SendAsync(RawConnection.Frame(0x7f, "abc"u8));

        var error = await bad.ReadFrameAsync();
        error.ShouldNotBeNull("expected an Error frame, got end of stream");
        error.FrameType.ShouldBe(FrameType.Error, error.ToString());
        error.Payload[0].ShouldBe((byte)3);
        error.Code.ShouldBe(ErrorCode.BadRequest);
        error.Message.ShouldContain("unknown frame type");
        error.Message.ShouldContain("0x7f");
        (await bad.WaitForCloseAsync(CloseTimeout)).ShouldBeTrue("the server must close the connection after the error frame");
        (await Server.Logs.WaitForAsync("unknown frame type 0x7f", CloseTimeout)).ShouldBeTrue(Server.Logs.Dump());

        await healthy.SendAsync(RawConnection.RequestFrame(EchoServer.Path, new EchoRequest("healthy", 2)));
        var frames = await healthy.ReadResponseAsync();
        frames.Select(f => f.ToString()).ShouldBe(["Data(\"healthy-0\")", "Data(\"healthy-1\")", "End()"]);
        ShouldHaveLoggedNoErrors();
    }

    [Fact]
    public async Task Truncated_frame_gets_a_BadRequest_error_naming_the_sizes_and_the_server_keeps_serving()
    {
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        await conn.SendAsync([.. RawConnection.Header(100, (byte)FrameType.Request), .. new byte[10]]);
        conn.ShutdownWrite();

        var error = await conn.ReadFrameAsync();
        error.ShouldNotBeNull("expected an Error frame after the half-close, got end of stream");
        error.Code.ShouldBe(ErrorCode.BadRequest, error.ToString());
        error.Message.ShouldBe("truncated frame: header announced 100 bytes, stream ended after 10");
        (await conn.WaitForCloseAsync(CloseTimeout)).ShouldBeTrue();
        (await Server.Logs.WaitForAsync("truncated frame", CloseTimeout)).ShouldBeTrue(Server.Logs.Dump());

        var request = new EchoRequest("after-truncated");
        (await Server.CallAsync(request)).ShouldBe(EchoServer.Expected(request));
        ShouldHaveLoggedNoErrors();
    }

    [Fact]
    public async Task A_header_cut_short_gets_a_BadRequest_error_naming_the_missing_header_bytes()
    {
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        await conn.SendAsync([0, 0, 0]);
        conn.ShutdownWrite();

        var error = await conn.ReadFrameAsync();
        error.ShouldNotBeNull("expected an Error frame after the half-close, got end of stream");
        error.Code.ShouldBe(ErrorCode.BadRequest, error.ToString());
        error.Message.ShouldBe("truncated frame: stream ended after 3 of 5 header bytes");
        (await conn.WaitForCloseAsync(CloseTimeout)).ShouldBeTrue();
        ShouldHaveLoggedNoErrors();
    }

    [Fact]
    public async Task Garbage_on_the_connection_of_an_active_stream_stops_its_handler_and_ends_the_response_with_BadRequest()
    {
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        var requestId = Guid.NewGuid().ToString("N");
        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, RawConnection.RequestPayload(EchoServer.Path, RawConnection.Json(new EchoRequest("cut", Count: 200, DelayMs: 50)), requestId)));
        (await conn.ReadFrameAsync())!.Text.ShouldBe("cut-0");

        await conn.SendAsync(RawConnection.Frame(0x7f, "zz"u8));

        // The handler (which would run for 10 s) is cancelled, and once it has stopped writing the response
        // ends with an error frame naming the problem, as for any other malformed input; then the connection closes.
        var frames = await conn.ReadResponseAsync();
        var error = frames[^1];
        error.FrameType.ShouldBe(FrameType.Error, string.Join(", ", frames));
        error.Code.ShouldBe(ErrorCode.BadRequest);
        error.Message.ShouldBe("malformed frame: unknown frame type 0x7f");
        frames.SkipLast(1).ShouldAllBe(f => f.FrameType == FrameType.Data);
        frames.Count.ShouldBeLessThan(50, "the stream must be cut at once, not run to completion");
        (await conn.WaitForCloseAsync(CloseTimeout)).ShouldBeTrue("the server must close the connection after the error frame");
        (await Server.Logs.WaitForAsync($"request {requestId} to {EchoServer.Path} cancelled", CloseTimeout)).ShouldBeTrue(Server.Logs.Dump());
        Server.Logs.Contains("unknown frame type 0x7f").ShouldBeTrue(Server.Logs.Dump());

        var request = new EchoRequest("after-cut");
        (await Server.CallAsync(request)).ShouldBe(EchoServer.Expected(request));
        ShouldHaveLoggedNoErrors();
    }

    [Fact]
    public async Task Oversized_frame_header_gets_FrameTooLarge_naming_both_sizes()
    {
        await using var small = await EchoServer.StartAsync(maxFrameSize: 64 * 1024);
        var conn = await Own(RawConnection.ConnectTlsAsync(small.EndPoint));

        // Only the header: the server must refuse on the announced length, not wait for 1 MiB.
        await conn.SendAsync(RawConnection.Header(1024 * 1024, (byte)FrameType.Request));

        var error = await conn.ReadFrameAsync();
        error.ShouldNotBeNull("expected an Error frame, got end of stream");
        error.Payload[0].ShouldBe((byte)6);
        error.Code.ShouldBe(ErrorCode.FrameTooLarge);
        error.Message.ShouldContain("1048576");
        error.Message.ShouldContain("65536");
        (await conn.WaitForCloseAsync(CloseTimeout)).ShouldBeTrue();

        var request = new EchoRequest("after-oversized");
        (await small.CallAsync(request)).ShouldBe(EchoServer.Expected(request));
        small.Logs.Errors.ShouldBeEmpty(small.Logs.Dump());
    }

    [Fact]
    public async Task Unknown_endpoint_gets_UnknownEndpoint_and_the_same_connection_then_carries_a_valid_request()
    {
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));

        await conn.SendAsync(RawConnection.RequestFrame("ns/none/nope", new EchoRequest("x")));
        var error = await conn.ReadFrameAsync();
        error.ShouldNotBeNull();
        error.Payload[0].ShouldBe((byte)4, error.ToString());
        error.Code.ShouldBe(ErrorCode.UnknownEndpoint);
        error.Message.ShouldContain("unknown endpoint");
        error.Message.ShouldContain("ns/none/nope");
        error.Message.ShouldContain(Server.Server.InstanceId.ToString("x"));

        await conn.SendAsync(RawConnection.RequestFrame(EchoServer.Path, new EchoRequest("again", 2)));
        var frames = await conn.ReadResponseAsync();
        frames.Select(f => f.ToString()).ShouldBe(["Data(\"again-0\")", "Data(\"again-1\")", "End()"]);
        ShouldHaveLoggedNoErrors();
    }

    [Fact]
    public async Task Undecodable_request_payload_gets_BadRequest_naming_the_endpoint_and_the_connection_goes_on()
    {
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));

        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, RawConnection.RequestPayload(EchoServer.Path, "{not json"u8)));
        var error = await conn.ReadFrameAsync();
        error.ShouldNotBeNull();
        error.Code.ShouldBe(ErrorCode.BadRequest, error.ToString());
        error.Message.ShouldContain("cannot decode the request");
        error.Message.ShouldContain($"'{EchoServer.Path}'");

        // Valid JSON of the wrong shape is just as undecodable.
        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, RawConnection.RequestPayload(EchoServer.Path, "[1,2,3]"u8)));
        error = await conn.ReadFrameAsync();
        error.ShouldNotBeNull();
        error.Code.ShouldBe(ErrorCode.BadRequest, error.ToString());
        error.Message.ShouldContain(EchoServer.Path);

        await conn.SendAsync(RawConnection.RequestFrame(EchoServer.Path, new EchoRequest("fine", 1)));
        (await conn.ReadResponseAsync()).Select(f => f.ToString()).ShouldBe(["Data(\"fine-0\")", "End()"]);
        ShouldHaveLoggedNoErrors();
    }

    [Fact]
    public async Task A_JSON_null_request_is_rejected_as_BadRequest_not_passed_to_the_handler()
    {
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));

        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, RawConnection.RequestPayload(EchoServer.Path, "null"u8)));
        var error = await conn.ReadFrameAsync();

        error.ShouldNotBeNull();
        error.FrameType.ShouldBe(FrameType.Error, error.ToString());
        error.Code.ShouldBe(
            ErrorCode.BadRequest,
            $"BUG (src/Runtime/Serving/EndpointInvoker.cs Prepare + JsonPayloadSerializer.Deserialize): the JSON literal null decodes to a null "
            + $"{nameof(EchoRequest)} that is handed to the handler, which then fails; the peer gets '{error}' and the server logs a handler "
            + "failure, instead of a BadRequest naming the endpoint");
        error.Message.ShouldContain(EchoServer.Path);
    }

    [Fact]
    public async Task A_first_frame_that_is_not_a_Request_gets_BadRequest()
    {
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));

        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Data, "\"hi\""u8));

        var error = await conn.ReadFrameAsync();
        error.ShouldNotBeNull();
        error.Code.ShouldBe(ErrorCode.BadRequest, error.ToString());
        error.Message.ShouldBe("malformed stream: expected a Request frame, got Data");
        (await conn.WaitForCloseAsync(CloseTimeout)).ShouldBeTrue();
    }

    [Fact]
    public async Task A_request_header_of_an_unsupported_version_gets_BadRequest()
    {
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        var payload = RawConnection.RequestPayload(EchoServer.Path, RawConnection.Json(new EchoRequest("v")));
        payload[0] = 9;

        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, payload));

        var error = await conn.ReadFrameAsync();
        error.ShouldNotBeNull();
        error.Code.ShouldBe(ErrorCode.BadRequest, error.ToString());
        error.Message.ShouldBe("request header: unsupported version 9 (expected 1 or 2)");
    }

    [Fact]
    public async Task A_very_long_non_ASCII_unknown_endpoint_path_still_gets_an_UnknownEndpoint_error()
    {
        // 3000 three-byte characters: a 9000-byte path (allowed: the header takes up to 65535 bytes) that the
        // server echoes in its error message, which it caps at 4096 bytes.
        var path = "ns/none/" + new string('€', 3000);
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));

        await conn.SendAsync(RawConnection.RequestFrame(path, new EchoRequest("x")));
        ReceivedFrame? error;
        try
        {
            error = await conn.ReadFrameAsync();
        }
        catch (Exception ex) when (ex is IOException or EndOfStreamException)
        {
            error = null;
        }

        var log = Server.Logs.Dump();
        error.ShouldNotBeNull(
            "BUG (src/Runtime/Wire/FrameWriter.cs WriteError): the error message is capped at 4096 characters but the span is sized for 4096 bytes, "
            + "so Encoding.UTF8.GetBytes throws ArgumentException for long multi-byte messages; the exception escapes StreamSession and the "
            + $"connection is dropped without an error frame. Server log:\n{log}");
        error.Code.ShouldBe(ErrorCode.UnknownEndpoint, error.ToString());
        error.Payload.Length.ShouldBeLessThanOrEqualTo(1 + 4096);
        error.Message.ShouldStartWith("unknown endpoint 'ns/none/€€€");
        Encoding.UTF8.GetByteCount(error.Message).ShouldBe(error.Payload.Length - 1);
    }

    [Fact]
    public async Task Garbage_on_other_connections_does_not_disturb_an_active_stream()
    {
        var a = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        var request = new EchoRequest("long", Count: 20, DelayMs: 25);
        await a.SendAsync(RawConnection.RequestFrame(EchoServer.Path, request));
        var first = await a.ReadFrameAsync();
        first.ShouldNotBeNull();
        first.Text.ShouldBe("long-0");

        // While A streams: garbage before TLS, an unknown frame type, an oversized header and a truncated frame.
        var plain = await Own(RawConnection.ConnectTcpAsync(Server.EndPoint));
        await plain.SendAsync(Encoding.ASCII.GetBytes(new string('\u0016', 5) + "garbage garbage garbage"));
        var unknown = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        await unknown.SendAsync(RawConnection.Frame(0x7f, "zzz"u8));
        var huge = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        await huge.SendAsync(RawConnection.Header(uint.MaxValue, (byte)FrameType.Request));
        var cut = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        await cut.SendAsync([.. RawConnection.Header(50, (byte)FrameType.Request), 1, 2, 3]);
        cut.ShutdownWrite();

        (await plain.WaitForCloseAsync(CloseTimeout)).ShouldBeTrue();
        (await unknown.ReadFrameAsync())!.Code.ShouldBe(ErrorCode.BadRequest);
        (await huge.ReadFrameAsync())!.Code.ShouldBe(ErrorCode.FrameTooLarge);
        (await cut.ReadFrameAsync())!.Code.ShouldBe(ErrorCode.BadRequest);

        var rest = await a.ReadResponseAsync();
        rest[^1].FrameType.ShouldBe(FrameType.End, string.Join(", ", rest));
        rest.SkipLast(1).Select(f => f.Text).Prepend(first.Text).ShouldBe(EchoServer.Expected(request));
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
