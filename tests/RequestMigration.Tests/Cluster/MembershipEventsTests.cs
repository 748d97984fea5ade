using System.Globalization;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.Membership;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.EndToEnd;
using RequestMigration.Tests.Etcd;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Cluster;

/// <summary>
/// Membership events as a router sees them, on each discovery store: a server joining, being reported down
/// and recovering, leaving gracefully, and (on the stores shared between processes) being killed, when its
/// lease expires.
/// </summary>
public abstract class MembershipEventsTests : IAsyncLifetime
{
    private readonly List<IAsyncDisposable> _owned = [];

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Options of a runtime on the store under test.</summary>
    protected abstract RuntimeOptions StoreOptions();

    /// <summary>The store shared by the in-process runtimes, for stores that live in one process; else null.</summary>
    protected virtual IKeyValueStore? SharedStore => null;

    /// <summary>Environment giving an example server process the same store; null when processes cannot share it.</summary>
    protected virtual Dictionary<string, string>? ChildStoreEnvironment() => null;

    public virtual ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public virtual async ValueTask DisposeAsync()
    {
        foreach (var d in Enumerable.Reverse(_owned))
        {
            await d.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task Joined_failed_recovered_and_left_arrive_in_order()
    {
        var endpoint = EndpointId.Parse($"events/backend/e{Guid.NewGuid():N}"[..32]);
        var router = Runtime().CreateRouter<string, string>(endpoint, new RouterOptions { InhibitDuration = TimeSpan.FromMilliseconds(300) });
        await router.Instances.Synced.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var events = router.Instances.WatchEventsAsync(Ct).GetAsyncEnumerator(Ct);

        var server = Runtime().CreateServer(new ServerOptions { Tags = InstanceTags.Parse("role=worker", "test") }).AddEndpoint<string, string>(endpoint, Echo);
        await server.StartAsync(Ct);
        var joined = await NextAsync(events);
        (joined.Kind, joined.Instance.InstanceId, joined.Instance.Address, joined.Instance.Tags["role"]).ShouldBe((MembershipEventKind.Joined, server.InstanceId, server.Address, "worker"));

        router.ReportInstanceDown(server.InstanceId, "test says so");
        var failed = await NextAsync(events);
        (failed.Kind, failed.Instance.InstanceId, failed.Reason).ShouldBe((MembershipEventKind.Failed, server.InstanceId, "test says so"));

        var recovered = await NextAsync(events);
        (recovered.Kind, recovered.Instance.InstanceId).ShouldBe((MembershipEventKind.Recovered, server.InstanceId));
        (recovered.Timestamp - failed.Timestamp).ShouldBeGreaterThanOrEqualTo(TimeSpan.FromMilliseconds(290));

        await server.StopAsync(Ct);
        var left = await NextAsync(events);
        (left.Kind, left.Instance.InstanceId).ShouldBe((MembershipEventKind.Left, server.InstanceId));
        left.Reason.ShouldNotBeNullOrEmpty();
    }

    /// <summary>Run by the stores processes share (file, etcd): an example server process killed with SIGKILL.</summary>
    protected async Task A_killed_server_leaves_when_its_lease_expires_core()
    {
        var env = ChildStoreEnvironment()!;
        await using var harness = new ExampleHarness();
        env["DYN_LEASE_TTL_SECS"] = "2";
        env["DYN_TRANSPORT"] = "tcp";
        var router = Runtime().CreateRouter<string, string>(EndpointId.Parse(ExampleHarness.Endpoint), new RouterOptions());
        await router.Instances.Synced.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var events = router.Instances.WatchEventsAsync(Ct).GetAsyncEnumerator(Ct);

        var (process, hex) = await harness.StartServerAsync("victim", "never", env);
        var id = ulong.Parse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var joined = await NextAsync(events);
        (joined.Kind, joined.Instance.InstanceId).ShouldBe((MembershipEventKind.Joined, id));

        await process.KillHardAsync();
        var killedAt = DateTime.UtcNow;
        var left = await NextAsync(events, TimeSpan.FromSeconds(15));
        (left.Kind, left.Instance.InstanceId).ShouldBe((MembershipEventKind.Left, id));
        (DateTime.UtcNow - killedAt).ShouldBeLessThan(TimeSpan.FromSeconds(5), "lease TTL is 2 s");
    }

    private RequestMigrationRuntime Runtime()
    {
        var options = StoreOptions();
        options.Transport = TransportKind.Tcp;
        var runtime = new RequestMigrationRuntime(options, store: SharedStore);
        _owned.Add(runtime);
        return runtime;
    }

    private static async Task<MembershipEvent> NextAsync(IAsyncEnumerator<MembershipEvent> events, TimeSpan? within = null)
    {
        (await events.MoveNextAsync().AsTask().WaitAsync(within ?? TimeSpan.FromSeconds(10), Ct)).ShouldBeTrue();
        return events.Current;
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Echo(string s, RequestContext ctx)
    {
        yield return s;
    }
#pragma warning restore CS1998
}

/// <summary>Membership events on the memory store.</summary>
public sealed class MemoryMembershipEventsTests : MembershipEventsTests
{
    private readonly MemoryKeyValueStore _store = new();

    protected override IKeyValueStore? SharedStore => _store;

    protected override RuntimeOptions StoreOptions() => new() { Discovery = new DiscoveryOptions { Store = StoreKind.Mem } };

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        await _store.DisposeAsync();
    }
}

/// <summary>Membership events on the file store (a killed server is a real process).</summary>
[Collection(EndToEndCollection.Name)]
public sealed class FileMembershipEventsTests : MembershipEventsTests
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "rm-events-" + Guid.NewGuid().ToString("N"));

    protected override RuntimeOptions StoreOptions() => new()
    {
        Discovery = new DiscoveryOptions { Store = StoreKind.File, LeaseTtl = TimeSpan.FromSeconds(2), File = new() { Root = _dir, Ttl = TimeSpan.FromSeconds(2) } },
    };

    protected override Dictionary<string, string>? ChildStoreEnvironment() => new() { ["DYN_STORE_KV"] = "file", ["DYN_FILE_KV"] = _dir };

    [Fact]
    public Task A_killed_server_leaves_when_its_lease_expires() => A_killed_server_leaves_when_its_lease_expires_core();

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}

/// <summary>Membership events on a real etcd (a killed server is a real process).</summary>
[Collection(EtcdOutageCollection.Name)]
public sealed class EtcdMembershipEventsTests(EtcdFixture etcd) : MembershipEventsTests
{
    protected override RuntimeOptions StoreOptions() => new() { Discovery = new DiscoveryOptions { Store = StoreKind.Etcd, Etcd = etcd.Options() } };

    protected override Dictionary<string, string>? ChildStoreEnvironment() => new() { ["DYN_STORE_KV"] = "etcd", ["ETCD_ENDPOINTS"] = etcd.ClientUrl.ToString().TrimEnd('/') };

    [Fact]
    public Task A_killed_server_leaves_when_its_lease_expires() => A_killed_server_leaves_when_its_lease_expires_core();

    public override async ValueTask InitializeAsync()
    {
        await etcd.StartAsync();
        await base.InitializeAsync();
    }
}
