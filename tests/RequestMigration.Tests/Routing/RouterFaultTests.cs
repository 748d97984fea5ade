using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using RequestMigration.Discovery.Instances;
using RequestMigration.Health;
using RequestMigration.LoadBalancing;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Transport;
using RequestMigration.Wire;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Transport.TransportConformanceTests;

namespace RequestMigration.Tests.Routing;

/// <summary>How the router rides through dead, stalled and failing instances (real TCP servers on loopback).</summary>
public sealed class RouterFaultTests : IAsyncLifetime
{
    private readonly TestCluster _cluster = new(TransportKind.Tcp);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public async Task Dead_instances_still_listed_in_discovery_cost_no_attempts()
    {
        await _cluster.StartNamedServerAsync("good");
        var registry = new InstanceRegistry(_cluster.Store);
        for (ulong i = 1; i <= 3; i++)
        {
            await registry.PutAsync(InstanceRecords.Record(EndpointId.Parse(TestCluster.DefaultEndpoint), 0xdead0 + i) with { Address = $"127.0.0.1:{FreePort()}" }, 0, Ct);
        }

        // A fresh router per request, as a fresh client process: it starts with the stale records listed.
        for (var run = 0; run < 8; run++)
        {
            var router = await _cluster.RouterAsync<string, string>(4, new RouterOptions { MaxAttempts = 3 });
            var items = await Collect(router.GenerateAsync("x", Ct));
            items.Select(i => i.IsError ? "ERR:" + i.Comment : i.Data).ShouldBe(["good:0", "good:1", "good:2"], $"run {run}");
        }

        _cluster.Logs.Contains("down due to stream error: cannot reach instance dead").ShouldBeTrue();
    }

    [Fact]
    public async Task An_instance_that_failed_this_request_is_not_picked_again_while_another_is_available()
    {
        var bad = await _cluster.StartNamedServerAsync("bad", count: 4, abortAfter: 1);
        await _cluster.StartNamedServerAsync("good", count: 4);

        // Inhibiting off, and a policy that always prefers "bad": only the request's own memory keeps it away.
        var router = await StickyRouterAsync(2, bad.InstanceId, new RouterOptions { InhibitDuration = TimeSpan.Zero, MaxAttempts = 3 });
        var items = await Collect(router.GenerateAsync("x", Ct));
        items.Select(i => i.IsError ? "ERR" : i.Data).ShouldBe(["bad:0", "ERR", "good:0", "good:1", "good:2", "good:3"]);
    }

    [Fact]
    public async Task The_final_error_carries_the_last_real_error_and_its_exception()
    {
        var registry = new InstanceRegistry(_cluster.Store);
        var port = FreePort();
        await registry.PutAsync(InstanceRecords.Record(EndpointId.Parse(TestCluster.DefaultEndpoint), 0xdead) with { Address = $"127.0.0.1:{port}" }, 0, Ct);
        var router = await _cluster.RouterAsync<string, string>(1, new RouterOptions { MaxAttempts = 3 });

        var ex = await Should.ThrowAsync<AttemptsExhaustedException>(() => Collect(router.GenerateAsync("x", Ct)));
        ex.Message.ShouldStartWith("Failed after 3 attempts: no instances found for endpoint test/backend/generate; last error: cannot reach instance dead at 127.0.0.1:");
        ex.Message.ShouldContain("refused");
        ex.InnerException.ShouldBeOfType<SocketException>().SocketErrorCode.ShouldBe(SocketError.ConnectionRefused);
    }

    [Fact]
    public async Task A_server_that_accepts_and_stalls_is_left_after_the_first_item_timeout()
    {
        var stalled = await _cluster.StartServerAsync<string, string>(StallForever);
        await _cluster.StartNamedServerAsync("good");
        var router = await StickyRouterAsync(2, stalled.InstanceId, new RouterOptions { FirstItemTimeout = TimeSpan.FromMilliseconds(300) });

        var items = await Collect(router.GenerateAsync("x", Ct)).WaitAsync(TimeSpan.FromSeconds(20), Ct);
        items.Select(i => i.IsError ? "ERR" : i.Data).ShouldBe(["ERR", "good:0", "good:1", "good:2"]);
        items[0].Comment.ShouldBe("Stream ended before generation completed (no response within 0.3 s, RouterOptions.FirstItemTimeout)");
        router.Instances.Available.Select(r => r.InstanceId).ShouldNotContain(stalled.InstanceId);
    }

    [Fact]
    public async Task A_request_that_cannot_be_serialized_fails_without_blaming_any_instance()
    {
        await _cluster.StartNamedServerAsync("good");
        var router = await _cluster.RouterAsync<Exploding, string>(1);
        await Should.ThrowAsync<InvalidOperationException>(() => Collect(router.GenerateAsync(new Exploding(), Ct)));
        router.Instances.Available.Count.ShouldBe(1);
        _cluster.Logs.Contains("Reporting instance").ShouldBeFalse();
    }

    [Fact]
    public async Task In_flight_counts_are_exact_under_concurrency_and_failover()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = 0;
        await _cluster.StartServerAsync<string, string>((_, ctx) => HoldThenSend("slow", release.Task, () => Interlocked.Increment(ref started), ctx));
        await _cluster.StartNamedServerAsync("cut", count: 3, abortAfter: 1);
        var router = await _cluster.RouterAsync<string, string>(2, new RouterOptions { LoadBalancingPolicy = LoadBalancingPolicies.LeastConnections });

        var calls = Enumerable.Range(0, 20).Select(_ => Task.Run(() => Collect(router.GenerateAsync("x", Ct)), Ct)).ToArray();
        while (Volatile.Read(ref started) < 20)
        {
            await Task.Delay(10, Ct);
        }

        // Every request ended up on "slow" (the ones that went to "cut" failed over), and is still open.
        States(router).Sum(s => s.InFlight).ShouldBe(20);
        release.SetResult();
        var results = await Task.WhenAll(calls);
        results.ShouldAllBe(r => r.Last().Data == "slow:done");
        States(router).ShouldAllBe(s => s.InFlight == 0);
    }

    [Fact]
    public async Task An_unknown_policy_name_is_an_error_listing_the_names_and_a_custom_policy_can_be_registered()
    {
        var runtime = _cluster.Runtime();
        var ex = Should.Throw<ArgumentException>(() => runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint), new RouterOptions { LoadBalancingPolicy = "fastest" }));
        ex.Message.ShouldBe("load-balancing policy 'fastest' (RouterOptions.LoadBalancingPolicy, DYN_LB_POLICY) is not known; valid: RoundRobin, Random, LeastConnections, PowerOfTwoChoices (Parameter 'name')");

        runtime.LoadBalancingPolicies.Register("Fastest", () => new StickyPolicy(() => 0));
        await using var router = runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint), new RouterOptions { LoadBalancingPolicy = "fastest" });
        router.LoadBalancingPolicy.ShouldBe("Sticky");
        runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint), new RouterOptions { LoadBalancingPolicy = "least_connections" }).LoadBalancingPolicy.ShouldBe("LeastConnections");
    }

    [Fact]
    public async Task An_attempt_observer_sees_which_instance_served_each_part_of_a_migrated_stream()
    {
        var a = await _cluster.StartNamedServerAsync("a", count: 5, abortAfter: 2);
        var b = await _cluster.StartNamedServerAsync("b", count: 5);
        var router = await StickyRouterAsync(2, a.InstanceId, new RouterOptions { Migration = true });
        var observer = new RecordingObserver();
        var items = await Collect(router.GenerateAsync("x", observer, Ct));

        items.Select(i => i.Data).ShouldBe(["a:0", "a:1", "b:2", "b:3", "b:4"]);
        observer.Seen.ShouldBe([
            $"start {a.InstanceId:x} #1 from 0", $"end {a.InstanceId:x} #1 items 2: {StreamErrors.StreamIncomplete}",
            $"start {b.InstanceId:x} #2 from 2", $"end {b.InstanceId:x} #2 items 3: ok"]);
    }

    [Fact]
    public async Task When_no_instance_appears_the_error_names_the_store_and_where_it_looked()
    {
        var dir = Path.Combine(Path.GetTempPath(), "rm-empty-" + Guid.NewGuid().ToString("N"));
        await using var runtime = new RequestMigrationRuntime(new RuntimeOptions { Discovery = new() { Store = RequestMigration.Discovery.StoreKind.File, File = new() { Root = dir } } });
        await using var router = runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint));
        var timeout = await Should.ThrowAsync<TimeoutException>(() => router.WaitForInstancesAsync(TimeSpan.FromMilliseconds(300), Ct));
        timeout.Message.ShouldBe($"no instances found for endpoint test/backend/generate within 0.3 s (looked in DYN_STORE_KV=file at {dir})");
        var none = await Should.ThrowAsync<NoInstancesException>(() => Collect(router.GenerateAsync("x", Ct)));
        none.Message.ShouldBe($"no instances found for endpoint test/backend/generate (looked in DYN_STORE_KV=file at {dir})");
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public async Task When_the_store_is_unreachable_the_error_says_so()
    {
        var port = FreePort();
        await using var runtime = new RequestMigrationRuntime(new RuntimeOptions { Discovery = new() { Store = RequestMigration.Discovery.StoreKind.Etcd, Etcd = new() { Endpoints = [new Uri($"http://127.0.0.1:{port}")] } } });
        await using var router = runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint));
        var timeout = await Should.ThrowAsync<TimeoutException>(() => router.WaitForInstancesAsync(TimeSpan.FromSeconds(3), Ct));
        timeout.Message.ShouldStartWith($"no instances found for endpoint test/backend/generate within 3 s (looked in DYN_STORE_KV=etcd at http://127.0.0.1:{port}, which is unreachable: ");
    }

    private sealed class RecordingObserver : IAttemptObserver
    {
        public List<string> Seen { get; } = [];

        public void OnAttemptStarted(InstanceRecord instance, int attempt, long resumeFrom) => Seen.Add($"start {instance.InstanceId:x} #{attempt} from {resumeFrom}");

        public void OnAttemptEnded(InstanceRecord instance, int attempt, long items, string? error) => Seen.Add($"end {instance.InstanceId:x} #{attempt} items {items}: {error ?? "ok"}");
    }

    private static InstanceState[] States<TReq, TResp>(PushRouter<TReq, TResp> router) =>
        [.. router.Instances.Source.Select(r => router.Instances.FindState(r.InstanceId)!)];

    private async Task<PushRouter<string, string>> StickyRouterAsync(int expected, ulong preferred, RouterOptions options)
    {
        var runtime = _cluster.Runtime();
        runtime.LoadBalancingPolicies.Register("sticky", () => new StickyPolicy(() => preferred));
        options.LoadBalancingPolicy = "sticky";
        var router = runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint), options);
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);
        while (router.Instances.Available.Count < expected)
        {
            await Task.Delay(10, Ct);
        }

        return router;
    }

    private static async IAsyncEnumerable<string> StallForever(string _, RequestContext ctx)
    {
        await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
        yield return "never";
    }

    private static async IAsyncEnumerable<string> HoldThenSend(string name, Task release, Action started, RequestContext ctx, [EnumeratorCancellation] CancellationToken unused = default)
    {
        started();
        await release.WaitAsync(ctx.CancellationToken);
        yield return $"{name}:done";
    }

    /// <summary>Always picks one instance when it is offered, else the first.</summary>
    internal sealed class StickyPolicy(Func<ulong> preferred) : ILoadBalancingPolicy
    {
        public string Name => "Sticky";

        public InstanceState? PickInstance(IReadOnlyList<InstanceState> availableInstances) =>
            availableInstances.FirstOrDefault(s => s.InstanceId == preferred()) ?? availableInstances[0];
    }

    public sealed class Exploding
    {
        public int Value => throw new InvalidOperationException("boom");
    }
}
