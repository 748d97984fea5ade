using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Discovery.Instances;
using RequestMigration.Health;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Transport;
using RequestMigration.Wire;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Cluster;

/// <summary>Passive health (consecutive failures) and the bounded wait for an inhibited instance; the router's clock is fake.</summary>
public sealed class PassiveHealthTests : IAsyncLifetime
{
    private static readonly EndpointId Endpoint = EndpointId.Parse(TestCluster.DefaultEndpoint);
    private readonly TestCluster _cluster = new(TransportKind.Tcp);
    private readonly FakeTimeProvider _time = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public void An_instance_is_inhibited_only_after_the_configured_failures_in_a_row()
    {
        var view = new InstanceAvailability(Endpoint, TimeSpan.FromSeconds(5), _time, NullLogger.Instance, failuresBeforeInhibit: 3);
        view.Apply(new InstanceChange(InstanceChangeKind.Upserted, 1, InstanceRecords.Record(Endpoint, 1)));
        var state = view.FindState(1)!;

        view.ReportFailure(1, "cut").ShouldBeFalse();
        view.ReportFailure(1, "cut").ShouldBeFalse();
        view.ReportSuccess(state);
        view.ReportFailure(1, "cut").ShouldBeFalse("a success started the count again");
        view.ReportFailure(1, "cut").ShouldBeFalse();
        view.Available.Count.ShouldBe(1);
        view.ReportFailure(1, "cut").ShouldBeTrue();
        view.Available.ShouldBeEmpty();
        view.ReportInstanceDown(1).ShouldBeFalse("already out");
    }

    [Fact]
    public async Task With_a_threshold_an_instance_that_failed_once_keeps_serving_other_requests()
    {
        var failNext = 1;
        var server = await _cluster.StartServerAsync<string, string>((_, ctx) => FailsWhenTold(() => Interlocked.Exchange(ref failNext, 0) == 1));
        await _cluster.StartNamedServerAsync("other");
        var router = await _cluster.RouterAsync<string, string>(2, new RouterOptions { FailuresBeforeInhibit = 2 }, _time);

        // Whichever instance the first failing request meets, one failure leaves both in rotation.
        while (Volatile.Read(ref failNext) == 1)
        {
            await TransportConformanceCollect(router.GenerateAsync("x", Ct));
        }

        router.Instances.Available.Select(r => r.InstanceId).ShouldContain(server.InstanceId);
    }

    [Fact]
    public async Task A_retry_that_finds_every_instance_inhibited_waits_for_the_earliest_to_return()
    {
        var failNext = 1;
        await _cluster.StartServerAsync<string, string>((_, ctx) => FailsWhenTold(() => Interlocked.Exchange(ref failNext, 0) == 1));
        var router = await _cluster.RouterAsync<string, string>(1, new RouterOptions(), _time);

        var call = TransportConformanceCollect(router.GenerateAsync("x", Ct));
        await WaitUntil(() => _cluster.Logs.Contains("every instance of endpoint=test/backend/generate is inhibited; waiting up to 10 s"));
        _time.Advance(TimeSpan.FromSeconds(4.9));
        await Task.Delay(100, Ct);
        call.IsCompleted.ShouldBeFalse("the instance is inhibited for 5 s");

        var items = await AdvanceUntilDone(call);
        items.Select(i => i.IsError ? "ERR:" + i.Comment : i.Data).ShouldBe(["one", $"ERR:{StreamErrors.StreamIncomplete}", "one", "two"]);
    }

    [Fact]
    public async Task A_retry_waiting_for_an_inhibited_instance_takes_a_new_one_as_soon_as_it_appears()
    {
        await _cluster.StartServerAsync<string, string>((_, ctx) => FailsWhenTold(() => true));
        var router = await _cluster.RouterAsync<string, string>(1, new RouterOptions(), _time);

        var call = TransportConformanceCollect(router.GenerateAsync("x", Ct));
        await WaitUntil(() => _cluster.Logs.Contains("every instance of endpoint=test/backend/generate is inhibited; waiting up to 10 s"));

        // The failed instance stays inhibited for 5 s of the router's (fake) clock; a newcomer ends the wait at once.
        var waitStarted = _time.GetUtcNow();
        var newcomer = await _cluster.StartNamedServerAsync("new", count: 2);
        await WaitUntil(() => router.Instances.Available.Any(r => r.InstanceId == newcomer.InstanceId));

        // Only the jitter before the retry (under 50 ms) is left to pass on the router's clock.
        var items = await AdvanceUntilDone(call);
        (_time.GetUtcNow() - waitStarted).ShouldBeLessThan(TimeSpan.FromSeconds(1), "the call went on well before the inhibited instance could return");
        items.Select(i => i.IsError ? "ERR:" + i.Comment : i.Data).ShouldBe(["one", $"ERR:{StreamErrors.StreamIncomplete}", "new:0", "new:1"]);
    }

    [Fact]
    public async Task When_the_wait_budget_is_spent_the_call_fails_with_the_last_real_error()
    {
        await _cluster.StartServerAsync<string, string>((_, ctx) => FailsWhenTold(() => true));
        var router = await _cluster.RouterAsync<string, string>(1, new RouterOptions { MaxRetryWait = TimeSpan.FromSeconds(2) }, _time);

        var call = TransportConformanceCollect(router.GenerateAsync("x", Ct));
        await WaitUntil(() => _cluster.Logs.Contains("waiting up to 2 s"));
        var ex = await Should.ThrowAsync<AttemptsExhaustedException>(() => AdvanceUntilDone(call));
        ex.Message.ShouldBe($"Failed after 3 attempts: no instances found for endpoint test/backend/generate; last error: {StreamErrors.StreamIncomplete}");
    }

    [Fact]
    public async Task Waiting_for_an_instance_honours_cancellation()
    {
        await _cluster.StartServerAsync<string, string>((_, ctx) => FailsWhenTold(() => true));
        var router = await _cluster.RouterAsync<string, string>(1, new RouterOptions(), _time);
        using var cts = new CancellationTokenSource();
        var call = TransportConformanceCollect(router.GenerateAsync("x", cts.Token));
        await WaitUntil(() => _cluster.Logs.Contains("waiting up to"));
        await cts.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(() => call.WaitAsync(TimeSpan.FromSeconds(5), Ct));
    }

    private static Task<List<Annotated<string>>> TransportConformanceCollect(IAsyncEnumerable<Annotated<string>> s) =>
        RequestMigration.Tests.Transport.TransportConformanceTests.Collect(s);

    private async Task<T> AdvanceUntilDone<T>(Task<T> task)
    {
        for (var i = 0; i < 400 && !task.IsCompleted; i++)
        {
            _time.Advance(TimeSpan.FromMilliseconds(50));
            await Task.Delay(5, Ct);
        }

        return await task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (var i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(10, Ct);
        }

        condition().ShouldBeTrue();
    }

    private static async IAsyncEnumerable<string> FailsWhenTold(Func<bool> fail)
    {
        var cut = fail();
        await Task.Yield();
        yield return "one";
        if (cut)
        {
            throw new AbortStreamException("told to");
        }

        yield return "two";
    }
}
