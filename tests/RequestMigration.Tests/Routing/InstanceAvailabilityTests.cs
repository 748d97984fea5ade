using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Discovery.Instances;
using RequestMigration.Health;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Routing;

/// <summary>instance_source / instance_avail semantics on a fake clock.</summary>
public sealed class InstanceAvailabilityTests : IDisposable
{
    private static readonly EndpointId Endpoint = EndpointId.Parse("ns/backend/generate");
    private readonly FakeTimeProvider _time = new();
    private readonly InstanceAvailability _view;

    public InstanceAvailabilityTests()
    {
        _view = new InstanceAvailability(Endpoint, TimeSpan.FromSeconds(5), _time, NullLogger.Instance);
        _view.Apply(Up(1));
        _view.Apply(Up(2));
        _view.Apply(Up(3));
        _view.Apply(new InstanceChange(InstanceChangeKind.Synced, 0, null));
    }

    public void Dispose() => _view.Dispose();

    [Fact]
    public void Report_down_removes_only_that_instance_from_available()
    {
        _view.ReportInstanceDown(2).ShouldBeTrue();
        Ids(_view.Available).ShouldBe([1UL, 3UL]);
        Ids(_view.Source).ShouldBe([1UL, 2UL, 3UL]);
        _view.ReportInstanceDown(2).ShouldBeFalse("already inhibited");
        _view.ReportInstanceDown(99).ShouldBeFalse("unknown");
    }

    [Fact]
    public void Inhibited_instance_returns_after_one_interval_and_not_before()
    {
        _time.Advance(TimeSpan.FromSeconds(1));
        _view.ReportInstanceDown(2);
        _time.Advance(TimeSpan.FromSeconds(3.9));
        Ids(_view.Available).ShouldBe([1UL, 3UL]);
        _time.Advance(TimeSpan.FromSeconds(0.1));
        Ids(_view.Available).ShouldBe([1UL, 2UL, 3UL]);
    }

    [Fact]
    public void A_discovery_change_reconciles_at_once_and_restarts_the_interval()
    {
        _view.ReportInstanceDown(2);
        _time.Advance(TimeSpan.FromSeconds(2));
        _view.Apply(Up(4));
        Ids(_view.Available).ShouldBe([1UL, 2UL, 3UL, 4UL]);

        _view.ReportInstanceDown(3);
        _time.Advance(TimeSpan.FromSeconds(4.5)); // 6.5 s after start: the old schedule would have fired at 5 s and 10 s
        Ids(_view.Available).ShouldBe([1UL, 2UL, 4UL]);
        _time.Advance(TimeSpan.FromSeconds(0.5));
        Ids(_view.Available).ShouldBe([1UL, 2UL, 3UL, 4UL]);
    }

    [Fact]
    public void A_removed_instance_is_not_restored_by_reconcile()
    {
        _view.ReportInstanceDown(2);
        _view.Apply(new InstanceChange(InstanceChangeKind.Removed, 2, null));
        _time.Advance(TimeSpan.FromSeconds(10));
        Ids(_view.Available).ShouldBe([1UL, 3UL]);
        Ids(_view.Source).ShouldBe([1UL, 3UL]);
    }

    [Fact]
    public void Zero_interval_disables_inhibiting()
    {
        using var view = new InstanceAvailability(Endpoint, TimeSpan.Zero, _time, NullLogger.Instance);
        view.Apply(Up(1));
        view.ReportInstanceDown(1).ShouldBeFalse();
        Ids(view.Available).ShouldBe([1UL]);
    }

    [Fact]
    public async Task Waiting_for_an_instance_completes_when_one_appears_and_times_out_otherwise()
    {
        using var view = new InstanceAvailability(Endpoint, TimeSpan.FromSeconds(5), _time, NullLogger.Instance);
        var wait = view.WaitForAvailableAsync(TimeSpan.FromSeconds(30), _time, TestContext.Current.CancellationToken);
        wait.IsCompleted.ShouldBeFalse();
        view.Apply(Up(7));
        await wait.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);

        using var empty = new InstanceAvailability(Endpoint, TimeSpan.FromSeconds(5), _time, NullLogger.Instance);
        var timeout = empty.WaitForAvailableAsync(TimeSpan.FromSeconds(3), _time, TestContext.Current.CancellationToken);
        _time.Advance(TimeSpan.FromSeconds(3));
        (await Should.ThrowAsync<TimeoutException>(() => timeout.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken)))
            .Message.ShouldBe("no instances found for endpoint ns/backend/generate within 3 s");
    }

    private static InstanceChange Up(ulong id) => new(InstanceChangeKind.Upserted, id, new InstanceRecord
    {
        InstanceId = id,
        Namespace = Endpoint.Namespace,
        Component = Endpoint.Component,
        Endpoint = Endpoint.Endpoint,
        Transport = "tcp",
        Address = $"127.0.0.1:{1000 + id}",
    });

    private static ulong[] Ids(IReadOnlyList<InstanceRecord> records) => [.. records.Select(r => r.InstanceId)];
}
