using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Transport;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Etcd.EtcdTestSupport;
using static RequestMigration.Tests.Infrastructure.InstanceRecords;

namespace RequestMigration.Tests.Etcd;

/// <summary>
/// Faults of a real 3-member etcd cluster on loopback: a member cut off from its peers while it keeps serving
/// clients, and a cluster without quorum when a server starts. Each test runs its own cluster; they share the
/// outage collection so that no other etcd test competes with them for the two cores while they time things.
/// </summary>
[Collection(EtcdOutageCollection.Name)]
public sealed class EtcdClusterTests : IAsyncLifetime
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(3);
    private readonly List<IAsyncDisposable> _owned = [];
    private EtcdCluster? _cluster;

    private EtcdCluster Cluster => _cluster!;

    public async ValueTask InitializeAsync() => _cluster = await EtcdCluster.StartAsync();

    public async ValueTask DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }

        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_member_cut_off_from_its_peers_deregisters_nobody_and_a_watch_through_it_moves_on()
    {
        var leader = await Cluster.LeaderAsync();
        leader.ShouldBeGreaterThanOrEqualTo(0, Cluster.Describe());
        var victim = (leader + 1) % 3; // a follower: the quorum side keeps its leader and expires leases meanwhile
        int[] healthy = [.. Enumerable.Range(0, 3).Where(i => i != victim)];
        int[] victimFirst = [victim, .. healthy];
        var endpoint = NewEndpoint();

        // The worst case: the whole fleet talks to the member that is about to be cut off.
        var servers = new List<InstanceRegistrar>();
        for (var i = 0; i < 3; i++)
        {
            var registrar = await InstanceRegistrar.StartAsync(new InstanceRegistry(Own(StoreOn(victimFirst))), Ttl);
            _owned.Add(registrar);
            await registrar.RegisterAsync(Record(endpoint, registrar.InstanceId));
            servers.Add(registrar);
        }

        ulong[] serverIds = [.. servers.Select(s => s.InstanceId)];
        var runtime = Own(new RequestMigrationRuntime(
            new RuntimeOptions { Transport = TransportKind.Tcp, Discovery = new DiscoveryOptions { Store = StoreKind.Etcd, Etcd = Cluster.Options(victimFirst) } },
            store: Own(StoreOn(victimFirst))));
        var router = runtime.CreateRouter<string, string>(endpoint, new RouterOptions { InhibitDuration = TimeSpan.Zero });
        (await EventuallyAsync(() => Task.FromResult(router.Instances.Source.Count == 3), TimeSpan.FromSeconds(10))).ShouldBeTrue("the router did not see the servers");

        // Reads and writes only on the side that keeps quorum.
        var quorum = new InstanceRegistry(Own(new EtcdKeyValueStore(Cluster.Options(healthy))));

        var sinceCut = Stopwatch.StartNew();
        Cluster.Isolate(victim);

        // A server that starts on the quorum side now: the long-lived router must learn about it.
        var late = Own(await InstanceRegistrar.StartAsync(new InstanceRegistry(Own(new EtcdKeyValueStore(Cluster.Options(healthy)))), Ttl));
        await late.RegisterAsync(Record(endpoint, late.InstanceId));

        // For two TTLs (plus etcd's expiry slack) no server may vanish on the quorum side.
        var gaps = new List<string>();
        TimeSpan? routerSawLate = null;
        while (sinceCut.Elapsed < (2 * Ttl) + TimeSpan.FromSeconds(1.5))
        {
            var ids = (await quorum.ListAsync(endpoint)).Select(r => r.InstanceId).ToHashSet();
            var missing = serverIds.Where(id => !ids.Contains(id)).ToList();
            if (missing.Count > 0)
            {
                gaps.Add($"{sinceCut.Elapsed.TotalSeconds:0.0} s: {missing.Count} of 3 servers deregistered");
            }

            if (routerSawLate is null && router.Instances.Source.Any(r => r.InstanceId == late.InstanceId))
            {
                routerSawLate = sinceCut.Elapsed;
            }

            await Task.Delay(200);
        }

        (await Cluster.HasLeaderAsync(victim)).ShouldBeFalse($"the test did not cut the member off\n{Cluster.Describe()}");
        gaps.ShouldBeEmpty("servers whose etcd member was cut off lost their registration on the quorum side");

        // A new client that asks the cut-off member first still gets the whole fleet.
        var fresh = new InstanceRegistry(Own(StoreOn(victimFirst)));
        (await fresh.ListAsync(endpoint)).Select(r => r.InstanceId).Order().ShouldBe([.. serverIds.Append(late.InstanceId).Order()]);

        // The router that watched through the cut-off member moved to a healthy one within a few seconds.
        routerSawLate.ShouldNotBeNull("the router's watch stayed on the cut-off member and went stale");
        routerSawLate.Value.ShouldBeLessThan(TimeSpan.FromSeconds(8));
        router.Instances.Source.Select(r => r.InstanceId).Order().ShouldBe([.. serverIds.Append(late.InstanceId).Order()]);
        TestContext.Current.TestOutputHelper?.WriteLine($"router saw the new server {routerSawLate.Value.TotalSeconds:0.0} s after the cut");
    }

    [Fact]
    public async Task A_server_started_while_etcd_has_no_quorum_waits_for_it_and_registers()
    {
        // Two of three members down: the survivor is up but has no quorum (and soon no leader).
        var survivor = 0;
        await Cluster.Members[1].StopAsync();
        await Cluster.Members[2].StopAsync();
        (await EventuallyAsync(async () => !await Cluster.HasLeaderAsync(survivor), TimeSpan.FromSeconds(10))).ShouldBeTrue("the survivor kept a leader");

        var logger = new CapturingLogger<InstanceRegistrar>();
        var store = Own(new EtcdKeyValueStore(Cluster.Options()));
        var sw = Stopwatch.StartNew();
        var starting = InstanceRegistrar.StartAsync(new InstanceRegistry(store), Ttl, logger: logger);

        await Task.Delay(TimeSpan.FromSeconds(3));
        starting.IsCompleted.ShouldBeFalse($"start-up gave up while etcd had no quorum: {(starting.IsFaulted ? starting.Exception!.InnerException!.Message : "completed")}");

        Cluster.Members[1].Launch();
        Cluster.Members[2].Launch();
        var registrar = Own(await starting.WaitAsync(TimeSpan.FromSeconds(25)));
        var waited = sw.Elapsed;
        var endpoint = NewEndpoint();
        await registrar.RegisterAsync(Record(endpoint, registrar.InstanceId));
        (await new InstanceRegistry(store).ListAsync(endpoint)).Single().InstanceId.ShouldBe(registrar.InstanceId);

        var warnings = logger.Entries().Where(e => e.Level >= LogLevel.Warning).ToList();
        warnings.Count.ShouldBe(1, string.Join('\n', warnings.Select(w => w.Message)));
        warnings[0].Message.ShouldContain($"127.0.0.1:{Cluster.Members[survivor].ClientPort}");
        TestContext.Current.TestOutputHelper?.WriteLine($"registered {waited.TotalSeconds:0.0} s after start; log: {string.Join(" | ", logger.Entries().Select(e => e.Message))}");
    }

    // Starting at the first listed member (the victim), not at a random one: the case that used to go wrong.
    private EtcdKeyValueStore StoreOn(int[] members) => new(Cluster.Options(members), null, null, new EtcdEndpointSelectionTests.FixedRandom(0));

    private T Own<T>(T disposable)
        where T : IAsyncDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }
}
