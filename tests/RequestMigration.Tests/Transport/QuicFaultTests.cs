using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using RequestMigration.Discovery.Instances;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Transport;

/// <summary>QUIC-specific faults on real sockets; skipped with the reason where libmsquic is absent.</summary>
public sealed class QuicFaultTests : IAsyncLifetime
{
    private readonly TestCluster _cluster = new(TransportKind.Quic);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        Assert.SkipUnless(TransportKinds.IsQuicSupported, "QUIC skipped: System.Net.Quic reports QuicConnection.IsSupported = false here (libmsquic 2.2+ is not installed).");
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public async Task A_connect_that_timed_out_does_not_poison_later_requests_to_that_address()
    {
        var (blackHole, port, connector) = BlackHoleWithOneSecondConnects();

        var started = System.Diagnostics.Stopwatch.StartNew();
        var ex = await Should.ThrowAsync<IOException>(async () => await connector.OpenAsync($"127.0.0.1:{port}", Ct));
        ex.Message.ShouldBe($"connect to 127.0.0.1:{port} timed out after 1 s");

        // When the timeout says, not when msquic has finished shutting the half-open connection down (~3 s later).
        started.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2.5));

        // The address comes alive: the next request must dial again, not fail at once from a cached task.
        blackHole.Dispose();
        await _cluster.StartServerAsync<string, string>(Echo, configure: o => o.ListenPort = port);
        await using var stream = await connector.OpenAsync($"127.0.0.1:{port}", Ct);
        stream.ConnectionId.ShouldStartWith($"127.0.0.1:{port}#");
    }

    [Fact]
    public async Task A_connect_that_failed_after_its_only_caller_gave_up_is_not_served_to_the_next_request()
    {
        var (blackHole, port, connector) = BlackHoleWithOneSecondConnects();

        // The only caller stops waiting long before the connect times out; the connect goes on and then fails
        // with nobody left to see it.
        using (var giveUp = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            giveUp.CancelAfter(TimeSpan.FromMilliseconds(100));
            await Should.ThrowAsync<OperationCanceledException>(async () => await connector.OpenAsync($"127.0.0.1:{port}", giveUp.Token));
        }

        // The connect times out 1 s after it started, with nobody waiting for it.
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);

        // The address comes alive: the next request dials again instead of getting that stale timeout.
        blackHole.Dispose();
        await _cluster.StartServerAsync<string, string>(Echo, configure: o => o.ListenPort = port);
        await using var stream = await connector.OpenAsync($"127.0.0.1:{port}", Ct);
        stream.ConnectionId.ShouldStartWith($"127.0.0.1:{port}#");
    }

    /// <summary>A UDP port that swallows everything (a handshake gets no answer, no ICMP either), and a QUIC connector whose connects time out after 1 s.</summary>
    private (UdpClient BlackHole, int Port, IClientConnector Connector) BlackHoleWithOneSecondConnects()
    {
        var blackHole = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var runtime = _cluster.Runtime(o => o.ConnectTimeout = TimeSpan.FromSeconds(1));
        return (blackHole, ((IPEndPoint)blackHole.Client.LocalEndPoint!).Port, runtime.Transports.ConnectorFor(TransportKinds.Quic));
    }

    [Fact]
    public async Task An_eight_second_network_blip_does_not_drop_a_stream()
    {
        var resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await _cluster.StartServerAsync<string, string>((_, ctx) => TwoHalves(resume.Task, ctx));
        await using var relay = new UdpRelay(int.Parse(server.Address.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture));

        // The same instance once more, reached through the relay.
        await new InstanceRegistry(_cluster.Store).PutAsync(new InstanceRecord
        {
            InstanceId = 0x5eed, Namespace = "test", Component = "backend", Endpoint = "generate",
            Transport = TransportKinds.Quic, Address = $"127.0.0.1:{relay.Port}",
        }, 0, Ct);
        var router = await _cluster.RouterAsync<string, string>(2);

        var received = new List<string>();
        await foreach (var item in router.DirectAsync("x", 0x5eed, Ct))
        {
            item.IsError.ShouldBeFalse(item.Comment);
            received.Add(item.Data!);
            if (received.Count == 1)
            {
                relay.Paused = true;
                await Task.Delay(TimeSpan.FromSeconds(8), Ct);
                relay.Paused = false;
                resume.SetResult();
            }
        }

        received.ShouldBe(["first", "second"]);
    }

    [Fact]
    public async Task An_instance_that_turns_away_the_QUIC_handshake_is_skipped_not_blamed_on_local_certificates()
    {
        // What a QUIC server that is shutting down (its listener closing) does to a new connection: it cancels
        // the handshake, and the client sees the TLS alert "user canceled".
        var tls = new RequestMigration.Transport.Tls.TlsConfiguration(_cluster.Options().Tls);
        var serverAuth = tls.ServerOptions();
#pragma warning disable CA1416 // the test is skipped where QUIC is unsupported
        await using var refusing = await System.Net.Quic.QuicListener.ListenAsync(
            new System.Net.Quic.QuicListenerOptions
            {
                ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
                ApplicationProtocols = [RequestMigration.Transport.Tls.TlsConfiguration.Alpn],
                ConnectionOptionsCallback = (_, _, _) => throw new InvalidOperationException("listener closing"),
            },
            Ct);
        var refusingPort = refusing.LocalEndPoint.Port;
        var accepting = Task.Run(async () =>
        {
            try
            {
                await refusing.AcceptConnectionAsync(Ct);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
            }
        });
#pragma warning restore CA1416
        var good = await _cluster.StartServerAsync<string, string>(Echo);
        await new InstanceRegistry(_cluster.Store).PutAsync(new InstanceRecord
        {
            InstanceId = 0xc105ed, Namespace = "test", Component = "backend", Endpoint = "generate",
            Transport = TransportKinds.Quic, Address = $"127.0.0.1:{refusingPort}",
        }, 0, Ct);
        var router = await _cluster.RouterAsync<string, string>(2);

        var served = new List<string?>();
        for (var i = 0; i < 4; i++)
        {
            served.AddRange((await TransportConformanceTests.Collect(router.GenerateAsync("x", Ct))).Select(item => item.IsError ? "ERR " + item.Comment : item.Data));
        }

        served.ShouldAllBe(d => d == "x");
        router.Instances.Available.Select(r => r.InstanceId).ShouldBe([good.InstanceId]);
        tls.Dispose();
    }

    private static async IAsyncEnumerable<string> TwoHalves(Task resume, RequestContext ctx, [EnumeratorCancellation] CancellationToken unused = default)
    {
        yield return "first";
        await resume.WaitAsync(ctx.CancellationToken);
        yield return "second";
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Echo(string s, RequestContext ctx)
    {
        yield return s;
    }
#pragma warning restore CS1998
}
