using System.Globalization;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Transport;

/// <summary>
/// Client connection pools (issue 8, "Router pools"): idle connections are closed after an idle timeout on a
/// timer, pools of instances that left discovery are dropped, and a connection the server closed does not sit in
/// CLOSE_WAIT. Real sockets; the pool's clock is a fake one the test moves.
/// </summary>
public abstract class ConnectionPoolTests : IAsyncLifetime
{
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TestCluster? _cluster;

    protected abstract TransportKind Kind { get; }

    /// <summary>TCP clients multiplex (rm/2) unless a subclass tests the one-request-per-connection fallback.</summary>
    protected virtual bool Multiplexed => true;

    private protected TestCluster Cluster => _cluster!;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public virtual ValueTask InitializeAsync()
    {
        _cluster = new TestCluster(Kind, Multiplexed);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        _release.TrySetResult();
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }

    [Fact]
    public void The_pool_idle_timeout_defaults_to_60_s_comes_from_DYN_POOL_IDLE_TIMEOUT_SECS_and_is_checked()
    {
        new RuntimeOptions().PooledConnectionIdleTimeout.ShouldBe(TimeSpan.FromSeconds(60));
        new RuntimeOptions().ApplyEnvironment(n => n == "DYN_POOL_IDLE_TIMEOUT_SECS" ? "15" : null).PooledConnectionIdleTimeout.ShouldBe(TimeSpan.FromSeconds(15));
        Should.Throw<ArgumentOutOfRangeException>(() => new RuntimeOptions { PooledConnectionIdleTimeout = TimeSpan.Zero }.Validate()).Message.ShouldContain("DYN_POOL_IDLE_TIMEOUT_SECS");
    }

    [Fact]
    public async Task An_idle_pooled_connection_is_closed_once_it_has_been_idle_for_the_idle_timeout()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var server = await StartAsync();
        var router = await Cluster.RouterAsync<string, string>(1, time: time, configure: o => o.PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30));
        (await TransportConformanceTests.Collect(router.GenerateAsync("a", Ct))).Single().Data.ShouldBe("a");
        server.ConnectionCount.ShouldBe(1);

        time.Advance(TimeSpan.FromSeconds(29));
        await Task.Delay(300, Ct);
        server.ConnectionCount.ShouldBe(1, "not idle long enough yet");

        time.Advance(TimeSpan.FromSeconds(2));
        (await WaitUntilAsync(() => server.ConnectionCount == 0)).ShouldBeTrue("the client closes a connection idle for longer than the timeout");

        // The next request simply connects again.
        (await TransportConformanceTests.Collect(router.GenerateAsync("b", Ct))).Select(i => i.IsError ? "ERR " + i.Comment : i.Data).ShouldBe(["b"]);
    }

    [Fact]
    public async Task Forgetting_an_instance_that_left_discovery_drops_its_idle_connections()
    {
        var server = await StartAsync();
        var runtime = Cluster.Runtime();
        var router = runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint), new RouterOptions());
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);
        var record = router.Instances.Available.Single();
        (await TransportConformanceTests.Collect(router.GenerateAsync("a", Ct))).Single().Data.ShouldBe("a");
        server.ConnectionCount.ShouldBe(1);

        runtime.Transports.ForgetInstance(record);

        (await WaitUntilAsync(() => server.ConnectionCount == 0)).ShouldBeTrue("the pool of a departed instance is dropped");
    }

    [Fact]
    public async Task A_router_drops_the_pool_of_an_instance_that_leaves_discovery()
    {
        var server = await StartAsync();
        var router = await Cluster.RouterAsync<string, string>(1);
        (await TransportConformanceTests.Collect(router.GenerateAsync("a", Ct))).Single().Data.ShouldBe("a");
        server.ConnectionCount.ShouldBe(1);

        // The record goes (the process is gone as far as discovery knows); the server itself keeps running.
        await new InstanceRegistry(Cluster.Store).DeleteAsync(EndpointId.Parse(TestCluster.DefaultEndpoint), server.InstanceId, Ct);

        (await WaitUntilAsync(() => server.ConnectionCount == 0)).ShouldBeTrue("the router forgets the departed instance's pool at once, not after the 60 s idle sweep");
    }

    [Fact]
    public async Task Forgetting_an_instance_lets_its_requests_in_flight_finish_first()
    {
        var server = await StartAsync();
        var runtime = Cluster.Runtime();
        var router = runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint), new RouterOptions());
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);
        var record = router.Instances.Available.Single();
        await using var held = router.GenerateAsync("hold", Ct).GetAsyncEnumerator(Ct);
        (await held.MoveNextAsync()).ShouldBeTrue();
        held.Current.Data.ShouldBe("held");

        runtime.Transports.ForgetInstance(record);
        await Task.Delay(200, Ct);
        server.ConnectionCount.ShouldBe(1, "a request in flight keeps its connection");
        _release.TrySetResult();

        (await held.MoveNextAsync()).ShouldBeTrue();
        held.Current.Data.ShouldBe("released", held.Current.Comment);
        (await held.MoveNextAsync()).ShouldBeFalse();
        (await WaitUntilAsync(() => server.ConnectionCount == 0)).ShouldBeTrue("once its last request ended, the connection is closed");
    }

    private protected Task<EndpointServer> StartAsync(Action<RuntimeOptions>? configure = null) =>
        Cluster.StartServerAsync<string, string>(Handle, configure: configure);

    private protected static async Task<bool> WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            await Task.Delay(10);
        }

        return true;
    }

    private async IAsyncEnumerable<string> Handle(string request, RequestContext ctx)
    {
        if (request != "hold")
        {
            yield return request;
            yield break;
        }

        yield return "held";
        await _release.Task.WaitAsync(ctx.CancellationToken);
        yield return "released";
    }
}

/// <summary>The pool on multiplexed TCP + TLS, including what the kernel says about connections the server closed.</summary>
public sealed class TcpConnectionPoolTests : ConnectionPoolTests
{
    protected override TransportKind Kind => TransportKind.Tcp;

    [Fact]
    public async Task After_a_server_restart_no_pooled_connection_is_left_in_CLOSE_WAIT()
    {
        Assert.SkipUnless(File.Exists("/proc/net/tcp"), "Reads socket states from Linux's /proc/net/tcp.");
        var server = await StartAsync();
        var port = Addresses.Split(server.Address).Port;
        await KeepListedAsync(Cluster, server);
        var router = await Cluster.RouterAsync<string, string>(2);
        (await TransportConformanceTests.Collect(router.DirectAsync("a", 0x5eed, Ct))).Single().Data.ShouldBe("a");

        // The server goes away and closes the idle connection: a multiplexed connection's reader sees that at
        // once and closes its end, without any sweep (the clock here is the real one and nothing advances it).
        await server.StopAsync(Ct);
        (await WaitUntilAsync(() => CloseWaitTo(port) == 0 && server.ConnectionCount == 0)).ShouldBeTrue($"{CloseWaitTo(port)} connection(s) in CLOSE_WAIT");
    }

    /// <summary>
    /// A second record for the same address, which the server's stop does not remove: the router keeps the
    /// instance (and its pool). Had it seen the instance leave discovery, it would have dropped the pool at once.
    /// </summary>
    internal static Task KeepListedAsync(TestCluster cluster, EndpointServer server) =>
        new InstanceRegistry(cluster.Store).PutAsync(new InstanceRecord
        {
            InstanceId = 0x5eed, Namespace = "test", Component = "backend", Endpoint = "generate", Transport = server.Transport, Address = server.Address,
        }, 0, Ct).AsTask();

    /// <summary>Sockets in CLOSE_WAIT whose remote end is 127.0.0.1:<paramref name="port"/>.</summary>
    internal static int CloseWaitTo(int port)
    {
        const string CloseWait = "08";
        var remote = $"0100007F:{port:X4}";
        return File.ReadLines("/proc/net/tcp").Skip(1)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Count(f => f.Length > 3 && string.Equals(f[2], remote, StringComparison.OrdinalIgnoreCase) && f[3] == CloseWait);
    }
}

/// <summary>The pool of the one-request-per-connection TCP client (the fallback for rm/1-only servers).</summary>
public sealed class LegacyTcpConnectionPoolTests : ConnectionPoolTests
{
    protected override TransportKind Kind => TransportKind.Tcp;

    protected override bool Multiplexed => false;

    [Fact]
    public async Task After_a_server_restart_no_pooled_connection_is_left_in_CLOSE_WAIT()
    {
        Assert.SkipUnless(File.Exists("/proc/net/tcp"), "Reads socket states from Linux's /proc/net/tcp.");
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var server = await StartAsync();
        var port = Addresses.Split(server.Address).Port;
        await TcpConnectionPoolTests.KeepListedAsync(Cluster, server);
        var router = await Cluster.RouterAsync<string, string>(2, time: time);
        (await TransportConformanceTests.Collect(router.DirectAsync("a", 0x5eed, Ct))).Single().Data.ShouldBe("a");

        // The server goes away and closes the idle connection: the client's end is now in CLOSE_WAIT.
        await server.StopAsync(Ct);
        (await WaitUntilAsync(() => TcpConnectionPoolTests.CloseWaitTo(port) == 1)).ShouldBeTrue($"expected the pooled connection in CLOSE_WAIT, saw {TcpConnectionPoolTests.CloseWaitTo(port)}");

        // One sweep of the pool later it is closed, without waiting for a request to stumble on it.
        time.Advance(TimeSpan.FromSeconds(1));
        (await WaitUntilAsync(() => TcpConnectionPoolTests.CloseWaitTo(port) == 0)).ShouldBeTrue($"{TcpConnectionPoolTests.CloseWaitTo(port)} connection(s) still in CLOSE_WAIT");
    }
}

/// <summary>The pool on QUIC: one connection per instance, closed when idle or forgotten.</summary>
public sealed class QuicConnectionPoolTests : ConnectionPoolTests
{
    protected override TransportKind Kind => TransportKind.Quic;

    public override ValueTask InitializeAsync()
    {
        Assert.SkipUnless(TransportKinds.IsQuicSupported, "QUIC skipped: libmsquic 2.2+ is not installed here; the same tests run on TCP.");
        return base.InitializeAsync();
    }
}
