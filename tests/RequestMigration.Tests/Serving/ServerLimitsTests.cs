using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Serving;
using RequestMigration.Tests.BadInput;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Wire;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Serving;

/// <summary>
/// <see cref="ServerLimits"/> (issue 8, "Limits"): documented defaults, environment variables, validation that
/// reports every bad value, and each limit enforced on TCP + TLS with frames built by hand. The same limits seen
/// through a router, on both transports, are in <see cref="ServerLimitsTransportTests"/>.
/// </summary>
public sealed class ServerLimitsTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public void Defaults_are_the_documented_production_values()
    {
        var limits = new RuntimeOptions().ApplyEnvironment(_ => null).Limits;

        limits.MaxConcurrentConnections.ShouldBe(10_000);
        limits.MaxConcurrentStreams.ShouldBe(10_000);
        limits.MaxConcurrentStreamsPerConnection.ShouldBe(1_000);
        limits.MaxRequestFrameSize.ShouldBe(4 * 1024 * 1024);
        limits.MaxBufferedRequestBytes.ShouldBe(64L * 1024 * 1024);
        limits.WriteTimeout.ShouldBe(TimeSpan.FromSeconds(30));
        limits.HandshakeTimeout.ShouldBe(TimeSpan.FromSeconds(10));
        limits.IdleTimeout.ShouldBe(TimeSpan.FromSeconds(120));
        limits.ListenBacklog.ShouldBe(512);
        limits.RejectionLogInterval.ShouldBe(TimeSpan.FromSeconds(10));
        new RuntimeOptions().Validate();
    }

    [Fact]
    public void Environment_variables_set_every_limit_and_zero_means_none_where_documented()
    {
        var env = new Dictionary<string, string>
        {
            ["DYN_MAX_CONNECTIONS"] = "0",
            ["DYN_MAX_STREAMS"] = "250",
            ["DYN_MAX_STREAMS_PER_CONNECTION"] = "20",
            ["DYN_MAX_REQUEST_FRAME_BYTES"] = "65536",
            ["DYN_MAX_BUFFERED_BYTES"] = "1048576",
            ["DYN_WRITE_TIMEOUT_SECS"] = "0",
            ["DYN_HANDSHAKE_TIMEOUT_SECS"] = "2.5",
            ["DYN_IDLE_TIMEOUT_SECS"] = "30",
            ["DYN_LISTEN_BACKLOG"] = "64",
        };

        var options = new RuntimeOptions().ApplyEnvironment(env.GetValueOrDefault);

        var limits = options.Limits;
        limits.MaxConcurrentConnections.ShouldBeNull();
        limits.MaxConcurrentStreams.ShouldBe(250);
        limits.MaxConcurrentStreamsPerConnection.ShouldBe(20);
        limits.MaxRequestFrameSize.ShouldBe(65536);
        limits.MaxBufferedRequestBytes.ShouldBe(1048576);
        limits.WriteTimeout.ShouldBeNull();
        limits.HandshakeTimeout.ShouldBe(TimeSpan.FromSeconds(2.5));
        limits.IdleTimeout.ShouldBe(TimeSpan.FromSeconds(30));
        limits.ListenBacklog.ShouldBe(64);
        options.Validate();
    }

    [Theory]
    [InlineData("DYN_MAX_CONNECTIONS", "-1")]
    [InlineData("DYN_MAX_STREAMS", "many")]
    [InlineData("DYN_MAX_STREAMS_PER_CONNECTION", "0")]
    [InlineData("DYN_MAX_REQUEST_FRAME_BYTES", "10")]
    [InlineData("DYN_WRITE_TIMEOUT_SECS", "-5")]
    [InlineData("DYN_HANDSHAKE_TIMEOUT_SECS", "soon")]
    [InlineData("DYN_LISTEN_BACKLOG", "0")]
    public void A_bad_environment_value_is_named(string name, string value)
    {
        var ex = Should.Throw<ArgumentException>(() => new RuntimeOptions().ApplyEnvironment(n => n == name ? value : null));

        ex.Message.ShouldContain($"{name}='{value}'");
    }

    [Fact]
    public void Validation_reports_every_limit_out_of_range_at_once_naming_property_and_variable()
    {
        var options = new RuntimeOptions
        {
            Limits =
            {
                MaxConcurrentConnections = 0,
                MaxConcurrentStreams = -3,
                MaxRequestFrameSize = 100,
                WriteTimeout = TimeSpan.Zero,
                HandshakeTimeout = TimeSpan.Zero,
                ListenBacklog = 0,
            },
        };

        var ex = Should.Throw<ArgumentException>(options.Validate);

        foreach (var expected in new[]
        {
            "MaxConcurrentConnections (DYN_MAX_CONNECTIONS)", "MaxConcurrentStreams (DYN_MAX_STREAMS)", "MaxRequestFrameSize (DYN_MAX_REQUEST_FRAME_BYTES)",
            "WriteTimeout (DYN_WRITE_TIMEOUT_SECS)", "HandshakeTimeout (DYN_HANDSHAKE_TIMEOUT_SECS)", "ListenBacklog (DYN_LISTEN_BACKLOG)",
        })
        {
            ex.Message.ShouldContain(expected, Case.Sensitive, ex.Message);
        }
    }

    [Fact]
    public void Refusals_are_logged_once_per_peer_and_limit_per_interval_counting_the_rest()
    {
        var time = new FakeTimeProvider();
        var log = new RejectionLog(TimeSpan.FromSeconds(10), time);

        log.ShouldLog("10.0.0.1", "MaxConcurrentStreams", out var suppressed).ShouldBeTrue();
        suppressed.ShouldBe(0);
        log.ShouldLog("10.0.0.1", "MaxConcurrentStreams", out _).ShouldBeFalse();
        log.ShouldLog("10.0.0.1", "MaxConcurrentStreams", out _).ShouldBeFalse();
        log.ShouldLog("10.0.0.2", "MaxConcurrentStreams", out _).ShouldBeTrue("another peer is reported on its own");
        log.ShouldLog("10.0.0.1", "WriteTimeout", out _).ShouldBeTrue("another limit is reported on its own");

        time.Advance(TimeSpan.FromSeconds(9));
        log.ShouldLog("10.0.0.1", "MaxConcurrentStreams", out _).ShouldBeFalse();
        time.Advance(TimeSpan.FromSeconds(1));
        log.ShouldLog("10.0.0.1", "MaxConcurrentStreams", out suppressed).ShouldBeTrue();
        suppressed.ShouldBe(3);
    }

    [Fact]
    public async Task A_request_over_the_server_stream_limit_gets_Unavailable_first_and_the_running_stream_is_untouched()
    {
        await using var server = await EchoServer.StartAsync(configure: o => o.Limits.MaxConcurrentStreams = 1);
        await using var running = await RawConnection.ConnectTlsAsync(server.EndPoint);
        var slow = new EchoRequest("slow", Count: 20, DelayMs: 25);
        await running.SendAsync(RawConnection.RequestFrame(EchoServer.Path, slow));
        (await running.ReadFrameAsync()).ShouldNotBeNull().Text.ShouldBe("slow-0");

        var refused = new List<ReceivedFrame>();
        for (var i = 0; i < 3; i++)
        {
            await using var extra = await RawConnection.ConnectTlsAsync(server.EndPoint);
            await extra.SendAsync(RawConnection.RequestFrame(EchoServer.Path, new EchoRequest("extra")));
            refused.Add((await extra.ReadFrameAsync()).ShouldNotBeNull());
        }

        foreach (var error in refused)
        {
            error.FrameType.ShouldBe(FrameType.Error, error.ToString());
            error.Code.ShouldBe(ErrorCode.Unavailable);
            error.Message.ShouldContain("MaxConcurrentStreams, DYN_MAX_STREAMS");
            error.Message.ShouldContain("try another instance");
        }

        var rest = await running.ReadResponseAsync();
        rest.Select(f => f.FrameType == FrameType.Data ? f.Text : f.FrameType.ToString()).ShouldBe([.. EchoServer.Expected(slow).Skip(1), "End"]);

        // Three refusals from one peer within the interval: one warning.
        (await server.Logs.WaitForAsync("MaxConcurrentStreams reached", Timeout)).ShouldBeTrue(server.Logs.Dump());
        var lines = server.Logs.Entries.Where(e => e.Message.Contains("MaxConcurrentStreams reached", StringComparison.Ordinal)).ToList();
        lines.Count.ShouldBe(1, server.Logs.Dump());
        lines[0].Level.ShouldBe(LogLevel.Warning);
        lines[0].Message.ShouldContain("peer 127.0.0.1");

        // Once the running stream ended, the slot is free again.
        (await server.CallAsync(new EchoRequest("after", 2))).ShouldBe(["after-0", "after-1"]);
    }

    [Fact]
    public async Task A_tcp_connection_over_the_connection_limit_is_closed_before_TLS_and_logged_once()
    {
        await using var server = await EchoServer.StartAsync(configure: o => o.Limits.MaxConcurrentConnections = 1);
        await using var held = await RawConnection.ConnectTlsAsync(server.EndPoint);

        for (var i = 0; i < 3; i++)
        {
            await using var extra = await RawConnection.ConnectTcpAsync(server.EndPoint);
            (await extra.WaitForCloseAsync(Timeout)).ShouldBeTrue("the server closes a connection over the limit at once");
        }

        (await server.Logs.WaitForAsync("MaxConcurrentConnections reached", Timeout)).ShouldBeTrue(server.Logs.Dump());
        var lines = server.Logs.Entries.Where(e => e.Message.Contains("MaxConcurrentConnections reached", StringComparison.Ordinal)).ToList();
        lines.Count.ShouldBe(1, server.Logs.Dump());
        lines[0].Message.ShouldContain("DYN_MAX_CONNECTIONS");

        // The connection inside the limit is served as usual, and its place is given back when it closes.
        await held.SendAsync(RawConnection.RequestFrame(EchoServer.Path, new EchoRequest("held", 2)));
        (await held.ReadResponseAsync()).Select(f => f.FrameType).ShouldBe([FrameType.Data, FrameType.Data, FrameType.End]);
        await held.DisposeAsync();
        (await WaitUntilAsync(() => server.Server.ConnectionCount == 0)).ShouldBeTrue($"connections: {server.Server.ConnectionCount}");
        await using var next = await RawConnection.ConnectTlsAsync(server.EndPoint);
        await next.SendAsync(RawConnection.RequestFrame(EchoServer.Path, new EchoRequest("next", 1)));
        (await next.ReadResponseAsync()).Select(f => f.FrameType).ShouldBe([FrameType.Data, FrameType.End]);
    }

    [Fact]
    public async Task A_peer_that_never_completes_the_TLS_handshake_is_dropped_after_the_handshake_timeout()
    {
        await using var server = await EchoServer.StartAsync(configure: o => o.Limits.HandshakeTimeout = TimeSpan.FromMilliseconds(300));
        await using var silent = await RawConnection.ConnectTcpAsync(server.EndPoint);

        (await silent.WaitForCloseAsync(TimeSpan.FromSeconds(5))).ShouldBeTrue("dropped long before the old fixed 10 s");

        (await server.Logs.WaitForAsync("HandshakeTimeout reached", Timeout)).ShouldBeTrue(server.Logs.Dump());
        server.Logs.Entries.Single(e => e.Message.Contains("HandshakeTimeout reached", StringComparison.Ordinal)).Message.ShouldContain("DYN_HANDSHAKE_TIMEOUT_SECS");
        (await WaitUntilAsync(() => server.Server.ConnectionCount == 0)).ShouldBeTrue("a dropped handshake gives its connection slot back");
    }

    [Fact]
    public async Task A_request_frame_over_the_default_request_limit_is_refused_naming_the_size()
    {
        await using var server = await EchoServer.StartAsync();
        await using var conn = await RawConnection.ConnectTlsAsync(server.EndPoint);

        // 4 MiB + 1: under the 16 MiB frame limit that applied to requests before.
        await conn.SendAsync(RawConnection.Header((4 * 1024 * 1024) + 1, (byte)FrameType.Request));
        var error = (await conn.ReadFrameAsync()).ShouldNotBeNull();

        error.Code.ShouldBe(ErrorCode.FrameTooLarge, error.ToString());
        error.Message.ShouldContain("exceeds the maximum frame size of 4194304 bytes");
    }

    private static Task<bool> WaitUntilAsync(Func<bool> condition) => Wait.UntilAsync(condition, Timeout);
}
