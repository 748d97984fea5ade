using System.Diagnostics;
using RequestMigration.Discovery.Etcd;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Etcd.EtcdTestSupport;

namespace RequestMigration.Tests.Etcd;

/// <summary>A bad endpoint next to a working etcd: calls move on, and stay away from it for a while.</summary>
[Collection(EtcdCollection.Name)]
public sealed class EtcdFailoverTests(EtcdFixture etcd)
{
    [Fact]
    public async Task A_hung_endpoint_costs_one_call_part_of_its_deadline_and_is_then_skipped()
    {
        await using var silent = new SilentListener();
        var options = etcd.Options();
        options.Endpoints = [silent.Url, etcd.ClientUrl];
        await using var store = new EtcdKeyValueStore(options, null, null, new EtcdEndpointSelectionTests.FixedRandom(0));
        var key = $"failover/{Guid.NewGuid():N}";

        var first = Stopwatch.StartNew();
        await store.PutAsync(key, B("1"));
        first.Stop();

        // The hung endpoint took its share of the 2 s budget (half of it) before the working one answered.
        first.Elapsed.ShouldBeGreaterThan(TimeSpan.FromSeconds(0.8));
        store.PreferredEndpoint.ShouldBe(1);

        var later = Stopwatch.StartNew();
        for (var i = 0; i < 5; i++)
        {
            S((await store.GetAsync(key))!.Value).ShouldBe("1");
        }

        later.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(0.8), "later calls went to the hung endpoint again");
    }

    [Fact]
    public async Task A_watch_on_a_dead_endpoint_moves_to_a_working_one()
    {
        var dead = EtcdFixture.FreePort();
        var options = etcd.Options();
        options.Endpoints = [new Uri($"http://127.0.0.1:{dead}"), etcd.ClientUrl];
        await using var store = new EtcdKeyValueStore(options, null, null, new EtcdEndpointSelectionTests.FixedRandom(0));
        await using var writer = new EtcdKeyValueStore(etcd.Options());
        var prefix = $"failover/{Guid.NewGuid():N}/";

        await using var recorder = WatchRecorder.Start(store, prefix);
        (await recorder.WaitForAsync(r => r.Synced, TimeSpan.FromSeconds(5))).ShouldBeTrue();
        await writer.PutAsync(prefix + "k", B("v"));
        (await recorder.WaitForAsync(r => r.View().ContainsKey(prefix + "k"), TimeSpan.FromSeconds(5))).ShouldBeTrue();
        store.PreferredEndpoint.ShouldBe(1);
    }
}
