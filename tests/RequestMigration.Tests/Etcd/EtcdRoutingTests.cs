using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;
using RequestMigration.Discovery.Instances;
using RequestMigration.Serving;
using RequestMigration.Tests.Transport;
using RequestMigration.Transport;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Etcd.EtcdTestSupport;

namespace RequestMigration.Tests.Etcd;

/// <summary>Servers and routers on a real etcd: routing through an etcd outage, and failover on etcd discovery.</summary>
[Collection(EtcdOutageCollection.Name)]
public sealed class EtcdRoutingTests(EtcdFixture etcd) : IAsyncLifetime
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(2);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => new(etcd.StartAsync());

    public async ValueTask DisposeAsync()
    {
        foreach (var runtime in _runtimes)
        {
            await runtime.DisposeAsync();
        }

        await etcd.StartAsync();
    }

    [Fact]
    public async Task Router_keeps_serving_through_an_etcd_outage_and_the_server_is_registered_afterwards()
    {
        var endpoint = NewEndpoint();
        var server = await StartServerAsync(endpoint, Echo);
        var router = Router(endpoint);
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);

        await etcd.StopAsync();
        var outageEnds = DateTime.UtcNow + Ttl + TimeSpan.FromSeconds(1.5);
        var served = 0;
        while (DateTime.UtcNow < outageEnds)
        {
            var items = await TransportConformanceTests.Collect(router.GenerateAsync("ab", Ct));
            items.Select(i => i.IsError ? "ERR " + i.Comment : i.Data).ShouldBe(["a", "b"]);
            served++;
            await Task.Delay(100, Ct);
        }

        await etcd.StartAsync();
        served.ShouldBeGreaterThan(5);

        // The server was never restarted: its record is in etcd again (new lease or restored one) and routable.
        await using var checkStore = new EtcdKeyValueStore(etcd.Options());
        (await EventuallyAsync(
            async () => (await new InstanceRegistry(checkStore).ListAsync(endpoint, Ct)).Any(r => r.InstanceId == server.InstanceId),
            TimeSpan.FromSeconds(15))).ShouldBeTrue("the server did not re-register after the outage");
        (await TransportConformanceTests.Collect(router.GenerateAsync("c", Ct))).Single().Data.ShouldBe("c");
        router.Instances.Source.Select(r => r.InstanceId).ShouldBe([server.InstanceId]);
    }

    [Fact]
    public async Task A_cut_stream_fails_over_between_instances_discovered_through_etcd()
    {
        var endpoint = NewEndpoint();
        var bad = await StartServerAsync(endpoint, CutAfterOne);
        await StartServerAsync(endpoint, Echo);
        var router = Router(endpoint);
        (await EventuallyAsync(() => Task.FromResult(router.Instances.Available.Count == 2), TimeSpan.FromSeconds(10))).ShouldBeTrue();

        for (var i = 0; i < 3; i++)
        {
            var items = await TransportConformanceTests.Collect(router.GenerateAsync("xyz", Ct));
            items.Where(x => !x.IsError).Select(x => x.Data).TakeLast(3).ShouldBe(["x", "y", "z"]);
        }

        router.Instances.Available.Select(r => r.InstanceId).ShouldNotContain(bad.InstanceId);
        // On etcd the instance id is the id of the lease its key is bound to.
        await using var checkStore = new EtcdKeyValueStore(etcd.Options());
        var entry = await checkStore.GetAsync(InstanceKeys.Key(endpoint, bad.InstanceId), Ct);
        entry.ShouldNotBeNull();
        ((ulong)entry.LeaseId).ShouldBe(bad.InstanceId);
    }

    [Fact]
    public async Task A_gracefully_stopped_server_leaves_the_router_at_once()
    {
        var endpoint = NewEndpoint();
        var server = await StartServerAsync(endpoint, Echo);
        var router = Router(endpoint);
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);

        // The record goes first, while the server still serves out its grace period (2 s by default).
        var stopped = System.Diagnostics.Stopwatch.StartNew();
        var stop = server.StopAsync(Ct);
        (await EventuallyAsync(() => Task.FromResult(router.Instances.Source.Count == 0), TimeSpan.FromSeconds(2)))
            .ShouldBeTrue("a graceful stop deletes the record (and revokes the lease) instead of waiting for the TTL");
        stopped.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2));
        await stop;
    }

    [Fact]
    public async Task A_corrupt_record_in_etcd_is_skipped_and_routing_continues_with_the_valid_ones()
    {
        var endpoint = NewEndpoint();
        var server = await StartServerAsync(endpoint, Echo);

        await using var raw = new EtcdKeyValueStore(etcd.Options());
        await raw.PutAsync(InstanceKeys.Key(endpoint, 0xbad), B("{not json"), cancellationToken: Ct);
        await raw.PutAsync(InstanceKeys.Prefix(endpoint) + "zzz", B("{}"), cancellationToken: Ct);

        var router = Router(endpoint);
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);
        router.Instances.Source.Select(r => r.InstanceId).ShouldBe([server.InstanceId]);
        (await TransportConformanceTests.Collect(router.GenerateAsync("ok", Ct))).Select(i => i.Data).ShouldBe(["o", "k"]);
    }

    private readonly List<RequestMigrationRuntime> _runtimes = [];

    private async Task<EndpointServer> StartServerAsync(EndpointId endpoint, EndpointHandler<string, string> handler)
    {
        var server = Runtime().CreateServer().AddEndpoint(endpoint, handler);
        await server.StartAsync(Ct);
        return server;
    }

    private RequestMigration.Routing.PushRouter<string, string> Router(EndpointId endpoint) => Runtime().CreateRouter<string, string>(endpoint);

    private RequestMigrationRuntime Runtime()
    {
        var runtime = NewRuntime();
        _runtimes.Add(runtime);
        return runtime;
    }

    private RequestMigrationRuntime NewRuntime() => new(new RuntimeOptions
    {
        Transport = TransportKind.Tcp,
        Discovery = new DiscoveryOptions { Store = StoreKind.Etcd, LeaseTtl = Ttl, Etcd = etcd.Options() },
        DrainTimeout = TimeSpan.FromSeconds(2),
    });

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Echo(string s, RequestContext ctx)
    {
        foreach (var c in s)
        {
            yield return c.ToString();
        }
    }

    private static async IAsyncEnumerable<string> CutAfterOne(string s, RequestContext ctx)
    {
        yield return s[..1];
        throw new AbortStreamException("test cut");
    }
#pragma warning restore CS1998
}
