using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;
using RequestMigration.Discovery.Instances;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Etcd.EtcdTestSupport;
using static RequestMigration.Tests.Infrastructure.InstanceRecords;

namespace RequestMigration.Tests.Etcd;

/// <summary>etcd-specific behaviour against the shared real etcd.</summary>
[Collection(EtcdCollection.Name)]
public sealed class EtcdStoreTests(EtcdFixture etcd)
{
    [Fact]
    public async Task Lease_expiry_removes_the_instance_record_from_a_watch_within_ttl_plus_1s()
    {
        await using var owner = new EtcdKeyValueStore(etcd.Options());
        await using var observer = new EtcdKeyValueStore(etcd.Options());
        var endpoint = NewEndpoint();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await using var watch = new InstanceRegistry(observer).WatchAsync(endpoint, cts.Token).GetAsyncEnumerator(cts.Token);
        (await NextAsync(watch)).Kind.ShouldBe(InstanceChangeKind.Synced);

        var ttl = TimeSpan.FromSeconds(2);
        var sinceGrant = Stopwatch.StartNew();
        var lease = await owner.GrantLeaseAsync(ttl, cts.Token);
        await new InstanceRegistry(owner).PutAsync(Record(endpoint, (ulong)lease), lease, cts.Token);
        var up = await NextAsync(watch);
        up.Kind.ShouldBe(InstanceChangeKind.Upserted);
        up.InstanceId.ShouldBe((ulong)lease);
        (await owner.GetAsync(InstanceKeys.Key(endpoint, (ulong)lease), cts.Token))!.LeaseId.ShouldBe(lease);

        var removed = await NextAsync(watch, TimeSpan.FromSeconds(10));
        var elapsed = sinceGrant.Elapsed;
        removed.Kind.ShouldBe(InstanceChangeKind.Removed);
        removed.InstanceId.ShouldBe((ulong)lease);
        elapsed.ShouldBeLessThanOrEqualTo(ttl + TimeSpan.FromSeconds(1), "the record must vanish within TTL + 1 s of the last renewal");
        elapsed.ShouldBeGreaterThan(ttl - TimeSpan.FromMilliseconds(200), "removed before the TTL: something other than the lease removed it");
        (await owner.GetAsync(InstanceKeys.Key(endpoint, (ulong)lease), cts.Token)).ShouldBeNull();
    }

    [Fact]
    public async Task Revisions_and_lease_ids_come_from_etcd()
    {
        await using var store = new EtcdKeyValueStore(etcd.Options());
        var prefix = $"rev/{Guid.NewGuid():N}/";
        var lease = await store.GrantLeaseAsync(TimeSpan.FromSeconds(30));
        await store.PutAsync(prefix + "a", B("1"), lease);
        var first = (await store.GetAsync(prefix + "a"))!;
        await store.PutAsync(prefix + "a", B("2"));
        var second = (await store.GetAsync(prefix + "a"))!;
        first.LeaseId.ShouldBe(lease);
        second.LeaseId.ShouldBe(0);
        second.ModRevision.ShouldBeGreaterThan(first.ModRevision);
        (await store.KeepAliveAsync(lease)).ShouldBeTrue();
        await store.RevokeLeaseAsync(lease);
        await store.RevokeLeaseAsync(lease); // unknown now: ignored
        (await store.GetAsync(prefix + "a")).ShouldNotBeNull("the key was rebound to no lease by the second put");
    }

    [Fact]
    public async Task Lease_time_to_live_is_read_without_renewing_and_is_null_once_the_lease_is_gone()
    {
        await using var owner = new EtcdKeyValueStore(etcd.Options());
        await using var reader = new EtcdKeyValueStore(etcd.Options());
        var lease = await owner.GrantLeaseAsync(TimeSpan.FromSeconds(30));
        var ttl = await reader.GetLeaseTimeToLiveAsync(lease);
        ttl.ShouldNotBeNull();
        ttl.Value.ShouldBeInRange(TimeSpan.FromSeconds(28), TimeSpan.FromSeconds(30));

        // Reading must not keep the lease alive: a short lease read repeatedly still expires on time.
        var shortLease = await owner.GrantLeaseAsync(TimeSpan.FromSeconds(2));
        var sw = Stopwatch.StartNew();
        TimeSpan? left = TimeSpan.MaxValue;
        while (left is not null && sw.Elapsed < TimeSpan.FromSeconds(8))
        {
            left = await reader.GetLeaseTimeToLiveAsync(shortLease);
            await Task.Delay(200);
        }

        left.ShouldBeNull("a lease that is only read must expire");
        sw.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(5));

        await owner.RevokeLeaseAsync(lease);
        (await reader.GetLeaseTimeToLiveAsync(lease)).ShouldBeNull();
        (await reader.GetLeaseTimeToLiveAsync(0)).ShouldBeNull();
    }

    [Fact]
    public async Task A_dead_endpoint_in_the_list_is_skipped()
    {
        var dead = new Uri($"http://127.0.0.1:{EtcdFixture.FreePort()}");
        var options = etcd.Options();
        options.Endpoints = [dead, etcd.ClientUrl];
        var logger = new CapturingLogger<EtcdKeyValueStore>();

        // Starting at the dead endpoint (processes normally start at a random one).
        await using var store = new EtcdKeyValueStore(options, null, logger, new EtcdEndpointSelectionTests.FixedRandom(0));
        store.Endpoints.ShouldBe([dead.GetLeftPart(UriPartial.Authority), etcd.ClientUrl.GetLeftPart(UriPartial.Authority)]);
        var prefix = $"multi/{Guid.NewGuid():N}/";

        var sw = Stopwatch.StartNew();
        await store.PutAsync(prefix + "k", B("v"));
        S((await store.GetAsync(prefix + "k"))!.Value).ShouldBe("v");
        sw.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(3));

        await using var recorder = WatchRecorder.Start(store, prefix);
        (await recorder.WaitForAsync(r => r.Synced, TimeSpan.FromSeconds(10))).ShouldBeTrue();
        await store.PutAsync(prefix + "k2", B("v2"));
        (await recorder.WaitForAsync(r => r.View().ContainsKey(prefix + "k2"), TimeSpan.FromSeconds(10))).ShouldBeTrue();
        recorder.Fault.ShouldBeNull();
        // One report of the dead endpoint, and nothing about the watch: it went straight to the endpoint that answers.
        var entries = logger.Entries();
        entries.ShouldNotContain(e => e.Message.Contains("watch", StringComparison.Ordinal), "the watch should go straight to the endpoint that answers");
        entries.Count.ShouldBe(1, string.Join('\n', entries));
        entries[0].Level.ShouldBe(LogLevel.Information);
        entries[0].Message.ShouldContain($"{dead.Authority} failed");
        store.PreferredEndpoint.ShouldBe(1);
    }

    [Fact]
    public async Task A_consumer_can_start_another_watch_from_inside_its_loop()
    {
        // With the library's callback watch this deadlocks: the callback runs on the receive loop.
        await using var store = new EtcdKeyValueStore(etcd.Options());
        var prefix = $"nested/{Guid.NewGuid():N}/";
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await store.PutAsync(prefix + "outer/1", B("x"), cancellationToken: cts.Token);
        string? seenInner = null;
        await foreach (var ev in store.WatchAsync(prefix + "outer/", cts.Token))
        {
            if (ev.Kind != WatchEventKind.Put)
            {
                continue;
            }

            await foreach (var inner in store.WatchAsync(prefix + "inner/", cts.Token))
            {
                if (inner.Kind == WatchEventKind.Synced)
                {
                    await store.PutAsync(prefix + "inner/1", B("y"), cancellationToken: cts.Token);
                }
                else
                {
                    seenInner = inner.Key;
                    break;
                }
            }

            break;
        }

        seenInner.ShouldBe(prefix + "inner/1");
    }

    [Fact]
    public async Task Many_watchers_on_one_store_each_see_every_change()
    {
        await using var store = new EtcdKeyValueStore(etcd.Options());
        var prefix = $"many/{Guid.NewGuid():N}/";
        var recorders = Enumerable.Range(0, 8).Select(_ => WatchRecorder.Start(store, prefix)).ToList();
        try
        {
            foreach (var r in recorders)
            {
                (await r.WaitForAsync(x => x.Synced, TimeSpan.FromSeconds(10))).ShouldBeTrue();
            }

            for (var i = 0; i < 20; i++)
            {
                await store.PutAsync($"{prefix}k{i:00}", B(i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            }

            await store.DeleteAsync(prefix + "k00");
            foreach (var r in recorders)
            {
                (await r.WaitForAsync(x => x.Events().Count == 22, TimeSpan.FromSeconds(10))).ShouldBeTrue($"saw {r.Events().Count} events");
                r.Events().Where(e => e.Kind == WatchEventKind.Put).Select(e => e.Key).ShouldBe(Enumerable.Range(0, 20).Select(i => $"{prefix}k{i:00}"));
                r.Events()[^1].Kind.ShouldBe(WatchEventKind.Delete);
            }
        }
        finally
        {
            foreach (var r in recorders)
            {
                await r.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Disposing_the_store_ends_its_watches()
    {
        var store = new EtcdKeyValueStore(etcd.Options());
        var recorder = WatchRecorder.Start(store, $"dispose/{Guid.NewGuid():N}/");
        (await recorder.WaitForAsync(r => r.Synced, TimeSpan.FromSeconds(10))).ShouldBeTrue();
        await store.DisposeAsync();
        (await recorder.WaitForAsync(r => r.Ended, TimeSpan.FromSeconds(5))).ShouldBeTrue();
        recorder.Fault.ShouldBeNull();
        await recorder.DisposeAsync();
        await Should.ThrowAsync<ObjectDisposedException>(async () => await store.GetAsync("x"));
    }

    private static async Task<InstanceChange> NextAsync(IAsyncEnumerator<InstanceChange> e, TimeSpan? timeout = null)
    {
        (await e.MoveNextAsync().AsTask().WaitAsync(timeout ?? TimeSpan.FromSeconds(10))).ShouldBeTrue("the watch ended early");
        return e.Current;
    }
}
