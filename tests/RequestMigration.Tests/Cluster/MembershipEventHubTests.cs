using System.Diagnostics.Metrics;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;
using RequestMigration.Membership;
using RequestMigration.Tests.BadInput;
using RequestMigration.Tests.Infrastructure;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Cluster;

/// <summary>
/// The fan-out behind <c>WatchEventsAsync</c>: every subscriber sees every event in publish order, and one that
/// stops reading loses its oldest events (counted and logged) without holding back the publisher or the others.
/// </summary>
public sealed class MembershipEventHubTests : IDisposable
{
    private static readonly EndpointId Endpoint = EndpointId.Parse("events/backend/hub");

    private readonly Meter _meter = new("hub-test-" + Guid.NewGuid().ToString("N"));
    private readonly CapturedLogs _logs = new();
    private readonly MetricInstruments _instruments;
    private readonly MembershipEventHub _hub;

    public MembershipEventHubTests()
    {
        _instruments = new MetricInstruments(_meter);
        _hub = new MembershipEventHub(Endpoint.ToString(), _logs.CreateLogger("hub"), _instruments);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _meter.Dispose();

    [Fact]
    public async Task Several_subscribers_each_see_every_event_in_publish_order()
    {
        var first = _hub.Subscribe(Ct).GetAsyncEnumerator(Ct);
        var second = _hub.Subscribe(Ct).GetAsyncEnumerator(Ct);
        var published = Enumerable.Range(1, 50).Select(i => Event(i)).ToList();

        // Published from two threads at once, as the availability view's callers may; each subscriber must still
        // see one complete sequence, the same one.
        var half = published.Count / 2;
        await Task.WhenAll(
            Task.Run(() => published.Take(half).ToList().ForEach(_hub.Publish), Ct),
            Task.Run(() => published.Skip(half).ToList().ForEach(_hub.Publish), Ct));

        var seenByFirst = await TakeAsync(first, published.Count);
        var seenBySecond = await TakeAsync(second, published.Count);
        seenByFirst.ShouldBe(seenBySecond);
        seenByFirst.OrderBy(e => e.Instance.InstanceId).ShouldBe(published);

        // Within one publisher thread the order is kept.
        seenByFirst.Where(e => e.Instance.InstanceId <= (ulong)half).ShouldBe(published.Take(half));
        _logs.Entries.ShouldBeEmpty();
    }

    [Fact]
    public async Task A_subscriber_that_stops_reading_loses_its_oldest_events_counted_and_logged_while_others_see_all()
    {
        using var dropped = new MetricCollector<long>(_instruments.MembershipEventsDropped);
        var slow = _hub.Subscribe(Ct).GetAsyncEnumerator(Ct);
        var fast = _hub.Subscribe(Ct).GetAsyncEnumerator(Ct);
        const int Over = 5;
        var total = MembershipEventHub.Capacity + Over;

        var fastSeen = new List<MembershipEvent>();
        for (var i = 1; i <= total; i++)
        {
            _hub.Publish(Event(i));

            // The fast subscriber keeps up; the slow one reads nothing until the end.
            (await fast.MoveNextAsync()).ShouldBeTrue();
            fastSeen.Add(fast.Current);
        }

        fastSeen.Select(e => e.Instance.InstanceId).ShouldBe(Enumerable.Range(1, total).Select(i => (ulong)i));

        // The slow one kept the newest Capacity events, in order: the first Over are gone.
        var slowSeen = await TakeAsync(slow, MembershipEventHub.Capacity);
        slowSeen.Select(e => e.Instance.InstanceId).ShouldBe(Enumerable.Range(Over + 1, MembershipEventHub.Capacity).Select(i => (ulong)i));

        dropped.GetMeasurementSnapshot().Sum(m => m.Value).ShouldBe(Over);
        var warnings = _logs.Entries.Where(e => e.Level == LogLevel.Warning).ToList();
        warnings.ShouldHaveSingleItem().Message.ShouldContain($"fell more than {MembershipEventHub.Capacity} events behind");
    }

    [Fact]
    public async Task Complete_ends_every_subscription()
    {
        var a = _hub.Subscribe(Ct).GetAsyncEnumerator(Ct);
        var b = _hub.Subscribe(Ct).GetAsyncEnumerator(Ct);
        _hub.Publish(Event(1));
        _hub.Complete();

        (await a.MoveNextAsync()).ShouldBeTrue();
        (await a.MoveNextAsync()).ShouldBeFalse();
        (await b.MoveNextAsync()).ShouldBeTrue();
        (await b.MoveNextAsync()).ShouldBeFalse();
    }

    private static MembershipEvent Event(int i) =>
        new(MembershipEventKind.Joined, InstanceRecords.Record(Endpoint, (ulong)i), DateTimeOffset.UnixEpoch.AddSeconds(i));

    private static async Task<List<MembershipEvent>> TakeAsync(IAsyncEnumerator<MembershipEvent> events, int count)
    {
        var taken = new List<MembershipEvent>(count);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        while (taken.Count < count)
        {
            (await events.MoveNextAsync().AsTask().WaitAsync(timeout.Token)).ShouldBeTrue();
            taken.Add(events.Current);
        }

        return taken;
    }
}
