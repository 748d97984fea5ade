using Dotnet = dotnet_etcd;
using Etcdserverpb;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;
using RequestMigration.Discovery.Instances;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Etcd.EtcdTestSupport;
using static RequestMigration.Tests.Infrastructure.InstanceRecords;

namespace RequestMigration.Tests.Etcd;

/// <summary>
/// etcd going away and coming back, on an etcd of their own: these tests kill and restart it (same ports, same
/// data directory) or cut clients off from it, which would disturb tests sharing an etcd.
/// </summary>
[Collection(EtcdOutageCollection.Name)]
public sealed class EtcdOutageTests(EtcdFixture etcd) : IAsyncLifetime
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(2);

    public ValueTask InitializeAsync() => new(etcd.StartAsync());

    public async ValueTask DisposeAsync()
    {
        // Whatever happened, leave etcd running for the next test.
        await etcd.StartAsync();
    }

    [Fact]
    public async Task Etcd_down_longer_than_the_ttl_then_restarted_keeps_the_registration_and_the_watch()
    {
        var endpoint = NewEndpoint();
        var prefix = InstanceKeys.Prefix(endpoint);
        await using var ownerStore = new EtcdKeyValueStore(etcd.Options());
        await using var watchStore = new EtcdKeyValueStore(etcd.Options());
        var registry = new InstanceRegistry(ownerStore);

        // A record nobody touches again: after the restart the watch must not report it a second time.
        var stableKey = InstanceKeys.Key(endpoint, 0xabc);
        await registry.PutAsync(Record(endpoint, 0xabc), 0);
        await using var registrar = await InstanceRegistrar.StartAsync(registry, Ttl);
        var key = InstanceKeys.Key(endpoint, registrar.InstanceId);
        await registrar.RegisterAsync(Record(endpoint, registrar.InstanceId));

        await using var recorder = WatchRecorder.Start(watchStore, prefix);
        (await recorder.WaitForAsync(r => r.Synced && r.View().Count == 2, TimeSpan.FromSeconds(10))).ShouldBeTrue();

        var leaseBefore = registrar.LeaseId;
        await etcd.StopAsync();
        await Task.Delay(Ttl + TimeSpan.FromSeconds(1));
        await etcd.StartAsync();

        // The registrar, never restarted, holds a live lease again and its record is bound to it.
        (await EventuallyAsync(
            async () => await ownerStore.KeepAliveAsync(registrar.LeaseId) && (await ownerStore.GetAsync(key))?.LeaseId == registrar.LeaseId,
            TimeSpan.FromSeconds(10))).ShouldBeTrue("the registrar did not recover its registration");

        // The watch that ran throughout is live again: a write made now reaches it.
        var probeKey = InstanceKeys.Key(endpoint, 0xdef);
        await registry.PutAsync(Record(endpoint, 0xdef), 0);
        (await recorder.WaitForAsync(r => r.View().ContainsKey(probeKey), TimeSpan.FromSeconds(10))).ShouldBeTrue("the watch did not resume");
        (await recorder.WaitForAsync(r => r.View().ContainsKey(key), TimeSpan.FromSeconds(10))).ShouldBeTrue("the watch does not show the record");

        recorder.Fault.ShouldBeNull();
        recorder.Ended.ShouldBeFalse();

        // etcd restores leases with a fresh TTL when it restarts, so the registrar normally keeps its lease here;
        // the partition test below covers a lease that really expired.
        TestContext.Current.TestOutputHelper?.WriteLine($"lease before the outage {leaseBefore:x}, after {registrar.LeaseId:x}");
        var events = recorder.Events();
        events.Count(e => e.Kind == WatchEventKind.Put && e.Key == stableKey).ShouldBe(1, "an unchanged key was reported again after the restart");
        events.Where(e => e.Kind != WatchEventKind.Synced).GroupBy(e => (e.Key, e.Revision)).ShouldAllBe(g => g.Count() == 1, "an event was delivered twice");
        events.Count(e => e.Kind == WatchEventKind.Synced).ShouldBe(1);
    }

    [Fact]
    public async Task Registrar_cut_off_longer_than_its_ttl_grants_a_new_lease_and_registers_again()
    {
        // The registrar reaches etcd through a relay that the test cuts, while etcd keeps running and really
        // expires the lease. (A restarted etcd restores its leases with a fresh TTL, so a restart alone does not.)
        await using var proxy = new TcpProxy(etcd.ClientPort);
        var viaProxy = etcd.Options();
        viaProxy.Endpoints = [proxy.Url];
        await using var ownerStore = new EtcdKeyValueStore(viaProxy);
        await using var watchStore = new EtcdKeyValueStore(etcd.Options());
        var endpoint = NewEndpoint();
        await using var registrar = await InstanceRegistrar.StartAsync(new InstanceRegistry(ownerStore), Ttl);
        var key = InstanceKeys.Key(endpoint, registrar.InstanceId);
        await registrar.RegisterAsync(Record(endpoint, registrar.InstanceId));
        var firstLease = registrar.LeaseId;

        await using var recorder = WatchRecorder.Start(watchStore, InstanceKeys.Prefix(endpoint));
        (await recorder.WaitForAsync(r => r.View().ContainsKey(key), TimeSpan.FromSeconds(10))).ShouldBeTrue();

        proxy.Block();
        (await recorder.WaitForAsync(r => !r.View().ContainsKey(key), Ttl + TimeSpan.FromSeconds(4))).ShouldBeTrue("the lease did not expire while cut off");
        (await watchStore.KeepAliveAsync(firstLease)).ShouldBeFalse();

        proxy.Unblock();
        (await recorder.WaitForAsync(r => r.View().ContainsKey(key), TimeSpan.FromSeconds(10))).ShouldBeTrue("the registrar did not register again");
        registrar.LeaseId.ShouldNotBe(firstLease);
        var entry = (await watchStore.GetAsync(key))!;
        entry.LeaseId.ShouldBe(registrar.LeaseId);
        (await new InstanceRegistry(watchStore).ListAsync(endpoint)).Single().InstanceId.ShouldBe(registrar.InstanceId);
        recorder.Events().Select(e => e.Kind).ShouldBe([WatchEventKind.Put, WatchEventKind.Synced, WatchEventKind.Delete, WatchEventKind.Put]);
        recorder.Fault.ShouldBeNull();
    }

    [Fact]
    public async Task A_watch_whose_revision_was_compacted_during_an_outage_resyncs_with_only_the_difference()
    {
        // The watch's retry delay runs on a fake clock, so the test decides when it reconnects: only after the
        // changes below were made and compacted away.
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var logger = new CapturingLogger<EtcdKeyValueStore>();
        var options = etcd.Options();
        options.WatchRetryInitialDelay = TimeSpan.FromSeconds(1);
        options.WatchRetryMaxDelay = TimeSpan.FromSeconds(1);
        await using var watchStore = new EtcdKeyValueStore(options, time, logger);
        await using var writer = new EtcdKeyValueStore(etcd.Options());
        var prefix = $"resync/{Guid.NewGuid():N}/";
        foreach (var k in new[] { "same", "changed", "deleted" })
        {
            await writer.PutAsync(prefix + k, B("1"));
        }

        await using var recorder = WatchRecorder.Start(watchStore, prefix);
        (await recorder.WaitForAsync(r => r.Synced, TimeSpan.FromSeconds(10))).ShouldBeTrue();
        var before = recorder.Events().Count;

        await etcd.StopAsync();
        (await EventuallyAsync(() => Task.FromResult(logger.Entries().Any(e => e.Level == LogLevel.Warning)), TimeSpan.FromSeconds(5)))
            .ShouldBeTrue("the watch did not notice that etcd went away");
        await etcd.StartAsync();

        await writer.PutAsync(prefix + "changed", B("2"));
        await writer.DeleteAsync(prefix + "deleted");
        await writer.PutAsync(prefix + "added", B("1"));
        var latest = (await writer.GetAsync(prefix + "added"))!.ModRevision;
        using (var channel = GrpcChannel.ForAddress(etcd.ClientUrl))
        {
            var client = new Dotnet.EtcdClient(channel.CreateCallInvoker());
            await client.GetConnection().KVClient.CompactAsync(new CompactionRequest { Revision = latest, Physical = true });
        }

        (await EventuallyAsync(
            () =>
            {
                time.Advance(TimeSpan.FromSeconds(1));
                return Task.FromResult(recorder.Events().Count >= before + 3);
            },
            TimeSpan.FromSeconds(10))).ShouldBeTrue("the watch did not catch up");

        var after = recorder.Events().Skip(before).ToList();
        after.Select(e => (e.Kind, e.Key)).ShouldBe(
        [
            (WatchEventKind.Put, prefix + "added"),
            (WatchEventKind.Put, prefix + "changed"),
            (WatchEventKind.Delete, prefix + "deleted"),
        ]);
        recorder.View().OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (kv.Key, kv.Value)).ShouldBe(
        [
            (prefix + "added", "1"),
            (prefix + "changed", "2"),
            (prefix + "same", "1"),
        ]);
        logger.Entries().ShouldContain(e => e.Message.Contains("compacted", StringComparison.Ordinal));
        logger.Entries().Count(e => e.Level == LogLevel.Warning).ShouldBe(1);
        recorder.Fault.ShouldBeNull();
    }
}
