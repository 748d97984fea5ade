using System.Text;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery.Instances;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
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
    private const string GonePath = "test/echo/gone";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly GoneHandler _gone = new();
    private EchoServer? _server;

    private EchoServer Server => _server ?? throw new InvalidOperationException("not started");

    public async ValueTask InitializeAsync() =>
        _server = await EchoServer.StartAsync(endpoints: s => s.AddEndpoint<string, string>(EndpointId.Parse(GonePath), _gone.HandleAsync));

    public async ValueTask DisposeAsync()
    {
        _gone.Release();
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

    [Fact]
    public async Task Incomplete_frames_across_connections_are_held_within_the_server_wide_budget_and_released_when_they_close()
    {
        // Scaled down from the fuzzer's 48 connections x 16 MiB: frames of 256 KiB, a budget of 1 MiB.
        const int frame = 256 * 1024;
        const long budget = 1024 * 1024;
        await using var server = await EchoServer.StartAsync(maxFrameSize: frame, configure: o => o.Limits.MaxBufferedRequestBytes = budget);
        var buffers = server.Server.RequestBuffers;
        var almostAll = (byte[])[.. RawConnection.Header(frame, (byte)FrameType.Request), .. new byte[frame - 1]];

        // Four connections each hold a frame one byte short of complete: 4 x (256 KiB - 1) bytes fit in 1 MiB.
        var holders = new List<RawConnection>();
        for (var i = 0; i < 4; i++)
        {
            var c = await Own(RawConnection.ConnectTlsAsync(server.EndPoint));
            await c.SendAsync(almostAll);
            holders.Add(c);
        }

        (await WaitUntilAsync(() => buffers.InUse == 4L * (frame - 1))).ShouldBeTrue($"in use: {buffers.InUse}\n{server.Logs.Dump()}");

        // The first 8 KiB of any further large frame would take the total over the budget: refused with an
        // error naming the limit. (8 KiB: the server reads all of it before refusing, so it closes cleanly.)
        var start = (byte[])[.. RawConnection.Header(frame, (byte)FrameType.Request), .. new byte[8 * 1024]];
        for (var i = 0; i < 5; i++)
        {
            var c = await Own(RawConnection.ConnectTlsAsync(server.EndPoint));
            await c.SendAsync(start);
            var error = await c.ReadFrameAsync();
            error.ShouldNotBeNull($"connection {i}: expected an error frame, got end of stream\n{server.Logs.Dump()}");
            error.Code.ShouldBe(ErrorCode.Unavailable, error.ToString());
            error.Message.ShouldContain("MaxBufferedRequestBytes");
            error.Message.ShouldContain("DYN_MAX_BUFFERED_BYTES");
            error.Message.ShouldContain(budget.ToString(System.Globalization.CultureInfo.InvariantCulture));
            (await c.WaitForCloseAsync(Timeout)).ShouldBeTrue();
            buffers.InUse.ShouldBeLessThanOrEqualTo(budget);
        }

        // A limit like the others: one warning per peer per interval, so five refusals of 127.0.0.1 in a row are
        // one line (the refusal is logged before its error frame goes out, so all five are in by now).
        var lines = server.Logs.Entries.Where(e => e.Message.Contains("DYN_MAX_BUFFERED_BYTES", StringComparison.Ordinal)).ToList();
        var line = lines.ShouldHaveSingleItem(server.Logs.Dump());
        line.Level.ShouldBe(LogLevel.Warning);
        line.Message.ShouldContain("MaxBufferedRequestBytes reached, refused peer 127.0.0.1");

        // Small requests are not counted, so they are served while the budget is exhausted.
        var small = new EchoRequest("small", 2);
        (await server.CallAsync(small)).ShouldBe(EchoServer.Expected(small));

        // Closing the holders gives every byte back.
        foreach (var c in holders)
        {
            await c.DisposeAsync();
        }

        (await WaitUntilAsync(() => buffers.InUse == 0)).ShouldBeTrue($"in use after the holders closed: {buffers.InUse}");

        // And a large request arriving in many reads fits again.
        var large = new EchoRequest(new string('L', frame / 2), 1);
        (await server.CallAsync(large)).ShouldBe(EchoServer.Expected(large));
        buffers.InUse.ShouldBe(0);
        server.Logs.Errors.ShouldBeEmpty(server.Logs.Dump());
    }

    [Fact]
    public void The_budget_comes_from_DYN_MAX_BUFFERED_BYTES_and_must_leave_room_for_the_largest_frame()
    {
        new RuntimeOptions().Limits.MaxBufferedRequestBytes.ShouldBe(64L * 1024 * 1024);
        new RuntimeOptions().ApplyEnvironment(n => n == "DYN_MAX_BUFFERED_BYTES" ? "8589934592" : null).Limits.MaxBufferedRequestBytes.ShouldBe(8L * 1024 * 1024 * 1024);
        new RuntimeOptions().ApplyEnvironment(n => n == "DYN_MAX_BUFFERED_BYTES" ? "0" : null).Validate();
        Should.Throw<ArgumentException>(() => new RuntimeOptions().ApplyEnvironment(n => n == "DYN_MAX_BUFFERED_BYTES" ? "lots" : null))
            .Message.ShouldContain("DYN_MAX_BUFFERED_BYTES='lots'");
        Should.Throw<ArgumentException>(() => new RuntimeOptions { Limits = { MaxBufferedRequestBytes = 1024 * 1024 } }.Validate())
            .Message.ShouldContain("largest request frame (4194304 bytes");
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

    [Fact]
    public async Task A_second_Request_while_a_response_streams_gets_BadRequest_naming_the_rule_and_the_handler_is_cancelled()
    {
        var conn = await Own(RawConnection.ConnectTlsAsync(Server.EndPoint));
        var requestId = Guid.NewGuid().ToString("N");
        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, RawConnection.RequestPayload(EchoServer.Path, RawConnection.Json(new EchoRequest("first", Count: 200, DelayMs: 50)), requestId)));
        (await conn.ReadFrameAsync())!.Text.ShouldBe("first-0");

        await conn.SendAsync(RawConnection.RequestFrame(EchoServer.Path, new EchoRequest("second")));

        var frames = await conn.ReadResponseAsync();
        var error = frames[^1];
        error.FrameType.ShouldBe(FrameType.Error, string.Join(", ", frames));
        error.Code.ShouldBe(ErrorCode.BadRequest);
        error.Message.ShouldBe("malformed stream: Request frame received while a response is in progress (one request at a time per stream: send the next after End or Error)");
        frames.SkipLast(1).ShouldAllBe(f => f.FrameType == FrameType.Data);
        frames.Count.ShouldBeLessThan(50, "the handler must be stopped at once, not run to completion");
        (await conn.WaitForCloseAsync(Timeout)).ShouldBeTrue("the server must close the connection after the error frame");
        (await Server.Logs.WaitForAsync($"request {requestId} to {EchoServer.Path} cancelled", Timeout)).ShouldBeTrue(Server.Logs.Dump());

        var request = new EchoRequest("after-second");
        (await Server.CallAsync(request)).ShouldBe(EchoServer.Expected(request));
        ShouldHaveLoggedNoErrors();
    }

    [Fact]
    public async Task A_consumer_that_disconnects_while_the_handler_awaits_between_items_cancels_it_its_finally_runs_and_nothing_is_logged_as_an_error()
    {
        var conn = await RawConnection.ConnectTlsAsync(Server.EndPoint);
        var requestId = Guid.NewGuid().ToString("N");
        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, RawConnection.RequestPayload(GonePath, RawConnection.Json("go"), requestId)));
        await _gone.BetweenItems.Task.WaitAsync(Timeout);

        await conn.DisposeAsync();

        // (Seen twice in ~60 runs: no cancellation within 10 s; not reproduced in the 52 runs after. The message keeps what would
        // tell why.)
        var cancelled = await Task.WhenAny(_gone.Cancelled.Task, Task.Delay(Timeout, TestContext.Current.CancellationToken));
        cancelled.ShouldBe(_gone.Cancelled.Task, $"the handler was not cancelled within {Timeout.TotalSeconds} s of the consumer leaving; thread pool: {ThreadPool.ThreadCount} threads, {ThreadPool.PendingWorkItemCount} items queued\n{Server.Logs.Dump()}");

        _gone.Release();
        var finallyRan = await Task.WhenAny(_gone.FinallyRan.Task, Task.Delay(Timeout));
        finallyRan.ShouldBe(_gone.FinallyRan.Task, $"the handler's finally never ran\n{Server.Logs.Dump()}");
        (await Server.Logs.WaitForAsync($"request {requestId} to {GonePath} cancelled", Timeout)).ShouldBeTrue(Server.Logs.Dump());
        var line = Server.Logs.Entries.Single(e => e.Message.Contains($"request {requestId} to {GonePath} cancelled", StringComparison.Ordinal));
        ((int)line.Level).ShouldBeLessThanOrEqualTo((int)LogLevel.Information, line.Message);
        line.Message.ShouldContain("consumer", Case.Insensitive, line.Message);
        ShouldHaveLoggedNoErrors();
    }

    /// <summary>Bad input is expected traffic: warnings, never errors (those mean the server itself failed).</summary>
    private void ShouldHaveLoggedNoErrors() => Server.Logs.Errors.ShouldBeEmpty(Server.Logs.Dump());

    private static Task<bool> WaitUntilAsync(Func<bool> condition) => Wait.UntilAsync(condition, Timeout);

    private async Task<T> Own<T>(Task<T> create)
        where T : IAsyncDisposable
    {
        var value = await create;
        _owned.Add(value);
        return value;
    }

    /// <summary>
    /// Yields an item, then is busy until the consumer has gone, then awaits something that ignores the
    /// request's token (as non-cancellable work would) before its next item. So the flush of the first item,
    /// which starts when the handler first awaits, meets a consumer that is gone while the handler is
    /// suspended between items: the race a fuzzer hits, made deterministic.
    /// </summary>
    private sealed class GoneHandler
    {
        private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource BetweenItems { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Cancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource FinallyRan { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Release() => _gate.TrySetResult();

        public async IAsyncEnumerable<string> HandleAsync(string request, RequestContext context)
        {
            using var registration = context.CancellationToken.Register(() => Cancelled.TrySetResult());
            try
            {
                // Off the session's read loop, which must go on reading to notice the consumer leave.
                await Task.Yield();
                yield return "first";
                BetweenItems.TrySetResult();
                context.CancellationToken.WaitHandle.WaitOne(Timeout);
                await _gate.Task;
                yield return "after";
            }
            finally
            {
                FinallyRan.TrySetResult();
            }
        }
    }
}
