using System.Collections.Concurrent;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Tests.Transport;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Serving;

/// <summary>
/// Graceful stop is invisible to consumers on both transports (issue 8, "Server"): deregister, keep serving
/// for a grace period while routers learn of it, then stop accepting, close connections between responses and
/// let in-flight streams finish.
/// </summary>
public abstract class GracefulStopTests : IAsyncLifetime
{
    private TestCluster? _cluster;

    protected abstract TransportKind Kind { get; }

    private TestCluster Cluster => _cluster!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public virtual ValueTask InitializeAsync()
    {
        _cluster = new TestCluster(Kind);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }

    [Fact]
    public void The_grace_period_defaults_to_2_s_comes_from_DYN_DEREGISTRATION_GRACE_SECS_and_is_checked()
    {
        new RuntimeOptions().DeregistrationGracePeriod.ShouldBe(TimeSpan.FromSeconds(2));
        new RuntimeOptions().ApplyEnvironment(n => n == "DYN_DEREGISTRATION_GRACE_SECS" ? "0.5" : null).DeregistrationGracePeriod.ShouldBe(TimeSpan.FromMilliseconds(500));
        Should.Throw<ArgumentException>(() => new RuntimeOptions().ApplyEnvironment(n => n == "DYN_DEREGISTRATION_GRACE_SECS" ? "-1" : null)).Message.ShouldContain("DYN_DEREGISTRATION_GRACE_SECS='-1'");
        Should.Throw<ArgumentOutOfRangeException>(() => new RuntimeOptions { DeregistrationGracePeriod = TimeSpan.FromSeconds(-1) }.Validate()).Message.ShouldContain("DYN_DEREGISTRATION_GRACE_SECS");
    }

    [Fact]
    public async Task During_the_grace_period_a_router_that_has_not_seen_the_deregistration_yet_is_served()
    {
        var server = await Cluster.StartServerAsync<string, string>((s, _) => Echo(s), configure: o => o.DeregistrationGracePeriod = TimeSpan.FromSeconds(1.5));

        // A router whose discovery lags behind: its store still holds the record after the server deregistered.
        await using var lagging = new MemoryKeyValueStore();
        foreach (var entry in await Cluster.Store.ListAsync(string.Empty, Ct))
        {
            await lagging.PutAsync(entry.Key, entry.Value, cancellationToken: Ct);
        }

        await using var runtime = new RequestMigrationRuntime(Cluster.Options(), store: lagging);
        var router = runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint), new RouterOptions());
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);

        var stop = server.StopAsync(Ct);
        while ((await Cluster.Store.ListAsync(string.Empty, Ct)).Count > 0)
        {
            await Task.Delay(5, Ct);
        }

        stop.IsCompleted.ShouldBeFalse("the server waits out the grace period after deregistering");
        var items = await TransportConformanceTests.Collect(router.GenerateAsync("still here", Ct));
        items.Select(i => i.IsError ? "ERR " + i.Comment : i.Data).ShouldBe(["still here"]);

        await stop.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }

    [Fact]
    public async Task A_rolling_restart_under_load_is_invisible_to_consumers()
    {
        Action<RuntimeOptions> graceful = o => o.DeregistrationGracePeriod = TimeSpan.FromMilliseconds(300);
        var servers = new List<EndpointServer>
        {
            await Cluster.StartServerAsync<int, int>(Slow, configure: graceful),
            await Cluster.StartServerAsync<int, int>(Slow, configure: graceful),
        };
        var router = await Cluster.RouterAsync<int, int>(2);
        var load = new ConsumerLoad(router, consumers: 6, Ct);

        // Replace each server in turn while requests keep coming, as a deployment would.
        for (var round = 0; round < 4; round++)
        {
            await Task.Delay(150, Ct);
            var leaving = servers[0];
            servers.RemoveAt(0);
            servers.Add(await Cluster.StartServerAsync<int, int>(Slow, configure: graceful));
            await leaving.StopAsync(Ct);
        }

        await Task.Delay(150, Ct);
        await load.StopAsync(TimeSpan.FromSeconds(30), Ct);

        load.Errors.ShouldBeEmpty(string.Join('\n', load.Errors));
        load.Completed.ShouldBeGreaterThan(20);
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Echo(string s)
    {
        yield return s;
    }
#pragma warning restore CS1998

    private static async IAsyncEnumerable<int> Slow(int n, RequestContext ctx)
    {
        for (var i = 0; i < n; i++)
        {
            await Task.Delay(5, ctx.CancellationToken);
            yield return i;
        }
    }
}

/// <summary>Graceful stop on TCP + TLS.</summary>
public sealed class TcpGracefulStopTests : GracefulStopTests
{
    protected override TransportKind Kind => TransportKind.Tcp;
}

/// <summary>Graceful stop on QUIC.</summary>
public sealed class QuicGracefulStopTests : GracefulStopTests
{
    protected override TransportKind Kind => TransportKind.Quic;

    public override ValueTask InitializeAsync()
    {
        Assert.SkipUnless(TransportKinds.IsQuicSupported, "QUIC skipped: libmsquic 2.2+ is not installed here; the same tests run on TCP.");
        return base.InitializeAsync();
    }
}
