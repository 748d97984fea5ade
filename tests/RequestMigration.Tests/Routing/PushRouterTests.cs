using System.Collections.Concurrent;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Routing;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Tests.Transport;
using RequestMigration.Transport;
using RequestMigration.Wire;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Routing;

/// <summary>Router modes, errors and inhibit/reconcile over real TCP servers; the router's clock is fake.</summary>
public sealed class PushRouterTests : IAsyncLifetime
{
    private readonly TestCluster _cluster = new(TransportKind.Tcp);
    private readonly FakeTimeProvider _time = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public async Task Round_robin_spreads_requests_evenly()
    {
        var calls = new ConcurrentQueue<string>();
        foreach (var name in new[] { "a", "b", "c" })
        {
            await _cluster.StartNamedServerAsync(name, calls: calls);
        }

        var router = await _cluster.RouterAsync<string, string>(3, time: _time);
        for (var i = 0; i < 30; i++)
        {
            await TransportConformanceTests.Collect(router.GenerateAsync("x", Ct));
        }

        calls.GroupBy(c => c).Select(g => g.Count()).ShouldAllBe(n => n == 10);
        var order = calls.ToArray();
        for (var i = 3; i < order.Length; i++)
        {
            order[i].ShouldBe(order[i - 3], "round robin repeats the same order");
        }
    }

    [Fact]
    public async Task Random_policy_reaches_every_instance()
    {
        var calls = new ConcurrentQueue<string>();
        await _cluster.StartNamedServerAsync("a", calls: calls);
        await _cluster.StartNamedServerAsync("b", calls: calls);
        var router = await _cluster.RouterAsync<string, string>(2, new RouterOptions { LoadBalancingPolicy = "random" }, _time);
        for (var i = 0; i < 60; i++)
        {
            await TransportConformanceTests.Collect(router.GenerateAsync("x", Ct));
        }

        calls.Distinct().Order().ShouldBe(["a", "b"]);
    }

    [Fact]
    public async Task Direct_calls_go_to_the_named_instance_and_name_a_missing_one()
    {
        await _cluster.StartNamedServerAsync("a");
        var b = await _cluster.StartNamedServerAsync("b");
        var router = await _cluster.RouterAsync<string, string>(2, time: _time);
        for (var i = 0; i < 4; i++)
        {
            (await TransportConformanceTests.Collect(router.DirectAsync("x", b.InstanceId, Ct)))[0].Data.ShouldBe("b:0");
        }

        var ex = await Should.ThrowAsync<InstanceNotFoundException>(() => TransportConformanceTests.Collect(router.DirectAsync("x", 0xabc, Ct)));
        ex.Message.ShouldBe("instance_id=abc not found for endpoint test/backend/generate");
    }

    [Fact]
    public async Task No_instances_is_a_clear_error()
    {
        var router = await _cluster.RouterAsync<string, string>(0, time: _time);
        var ex = await Should.ThrowAsync<NoInstancesException>(() => TransportConformanceTests.Collect(router.GenerateAsync("x", Ct)));
        ex.Message.ShouldBe("no instances found for endpoint test/backend/generate (looked in DYN_STORE_KV=mem (in this process only))");
    }

    [Fact]
    public async Task Attempts_are_exhausted_with_an_error_item_per_attempt()
    {
        for (var i = 0; i < 4; i++)
        {
            await _cluster.StartNamedServerAsync("bad" + i, count: 5, abortAfter: 1);
        }

        var router = await _cluster.RouterAsync<string, string>(4, new RouterOptions { MaxAttempts = 3 }, _time);
        var items = new List<Annotated<string>>();
        var ex = await Record.ExceptionAsync(async () =>
        {
            await foreach (var i in router.GenerateAsync("x", Ct))
            {
                items.Add(i);
            }
        });
        ex.ShouldBeOfType<AttemptsExhaustedException>().Message.ShouldBe($"Failed after 3 attempts: {StreamErrors.StreamIncomplete}");
        items.Count(i => i.IsError).ShouldBe(3);
        items.Count(i => !i.IsError).ShouldBe(3);
        router.Instances.Available.Count.ShouldBe(1, "three distinct instances were reported down");
    }

    [Fact]
    public async Task Inhibited_instance_is_skipped_until_the_reconcile_interval_passes()
    {
        var calls = new ConcurrentQueue<string>();
        var bad = await _cluster.StartNamedServerAsync("bad", count: 4, abortAfter: 2, calls: calls);
        await _cluster.StartNamedServerAsync("good", count: 4, calls: calls);
        var router = await _cluster.RouterAsync<string, string>(2, new RouterOptions { InhibitDuration = TimeSpan.FromSeconds(5) }, _time);

        // Reach "bad" once so it gets inhibited.
        while (!calls.Contains("bad"))
        {
            await TransportConformanceTests.Collect(router.GenerateAsync("x", Ct));
        }

        router.Instances.Available.Select(r => r.InstanceId).ShouldNotContain(bad.InstanceId);
        calls.Clear();
        for (var i = 0; i < 6; i++)
        {
            (await TransportConformanceTests.Collect(router.GenerateAsync("x", Ct))).ShouldAllBe(x => !x.IsError);
        }

        calls.ShouldAllBe(c => c == "good");
        _time.Advance(TimeSpan.FromSeconds(5));
        router.Instances.Available.Select(r => r.InstanceId).ShouldContain(bad.InstanceId);
    }

    [Fact]
    public async Task Options_are_validated_up_front()
    {
        var rt = _cluster.Runtime();
        var ex = Should.Throw<ArgumentOutOfRangeException>(() => rt.CreateRouter<string, string>(RequestMigration.Discovery.Instances.EndpointId.Parse("a/b/c"), new RouterOptions { MaxAttempts = 0 }));
        ex.ParamName.ShouldBe("MaxAttempts");
        await Task.CompletedTask;
    }
}
