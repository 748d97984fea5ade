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
    public void Inhibited_instance_returns_after_its_duration_and_not_before()
    {
        _time.Advance(TimeSpan.FromSeconds(1));
        _view.ReportInstanceDown(2);
        _time.Advance(TimeSpan.FromSeconds(4.9));
        Ids(_view.Available).ShouldBe([1UL, 3UL]);
        _time.Advance(TimeSpan.FromSeconds(0.1));
        Ids(_view.Available).ShouldBe([1UL, 2UL, 3UL]);
    }

    [Fact]
    public void A_discovery_change_does_not_bring_an_inhibited_instance_back_early()
    {
        _view.ReportInstanceDown(2);
        _time.Advance(TimeSpan.FromSeconds(2));
        _view.Apply(Up(4));
        _view.Apply(new InstanceChange(InstanceChangeKind.Removed, 3, null));
        _view.Apply(Up(1)); // a refreshed record of another instance
        Ids(_view.Available).ShouldBe([1UL, 4UL]);
        Ids(_view.Source).ShouldBe([1UL, 2UL, 4UL]);
        _time.Advance(TimeSpan.FromSeconds(3));
        Ids(_view.Available).ShouldBe([1UL, 2UL, 4UL]);
    }

    [Fact]
    public void Each_instance_returns_on_its_own_deadline()
    {
        _view.ReportInstanceDown(1);
        _time.Advance(TimeSpan.FromSeconds(2));
        _view.ReportInstanceDown(2);
        _time.Advance(TimeSpan.FromSeconds(3));
        Ids(_view.Available).ShouldBe([1UL, 3UL], "1 is back after 5 s; 2's own deadline is 2 s later");
        _time.Advance(TimeSpan.FromSeconds(1.9));
        Ids(_view.Available).ShouldBe([1UL, 3UL]);
        _time.Advance(TimeSpan.FromSeconds(0.1));
        Ids(_view.Available).ShouldBe([1UL, 2UL, 3UL]);
    }

    [Fact]
    public void Reporting_an_instance_again_after_it_returned_starts_a_new_full_duration()
    {
        _view.ReportInstanceDown(2);
        _time.Advance(TimeSpan.FromSeconds(5));
        _view.ReportInstanceDown(2).ShouldBeTrue();
        _time.Advance(TimeSpan.FromSeconds(4.9));
        Ids(_view.Available).ShouldBe([1UL, 3UL]);
        _time.Advance(TimeSpan.FromSeconds(0.1));
        Ids(_view.Available).ShouldBe([1UL, 2UL, 3UL]);
    }

    [Fact]
    public void The_same_id_at_a_new_address_is_a_new_incarnation_and_not_inhibited()
    {
        _view.ReportInstanceDown(2);
        _view.Apply(new InstanceChange(InstanceChangeKind.Upserted, 2, Up(2).Record! with { Address = "127.0.0.1:9999" }));
        Ids(_view.Available).ShouldBe([1UL, 2UL, 3UL]);
    }

    [Fact]
    public void A_restarted_watch_drops_instances_that_left_while_it_was_down()
    {
        _view.ReportInstanceDown(3);
        _view.BeginResync();
        _view.Apply(Up(1));
        _view.Apply(Up(3));
        _view.Apply(Up(5));
        Ids(_view.Source).ShouldBe([1UL, 2UL, 3UL, 5UL], "until the snapshot is complete, nothing is dropped");
        _view.Apply(new InstanceChange(InstanceChangeKind.Synced, 0, null));
        Ids(_view.Source).ShouldBe([1UL, 3UL, 5UL]);
        Ids(_view.Available).ShouldBe([1UL, 5UL], "3 is still inhibited across the resync");
    }

    [Fact]
    public void A_removed_instance_is_not_restored_by_reconcile()
    {
        _view.ReportInstanceDown(2);
        _view.Apply(new InstanceChange(InstanceChangeKind.Removed, 2, null));
        _time.Advance(TimeSpan.FromSeconds(10));
        Ids(_view.Available).ShouldBe([1UL, 3UL]);
        Ids(_view.Source).ShouldBe([1UL, 3UL]);
        _view.Apply(Up(2));
        Ids(_view.Available).ShouldBe([1UL, 2UL, 3UL], "a returning instance starts with a clean slate");
    }

    [Fact]
    public void Zero_interval_disables_inhibiting()
    {
        var view = new InstanceAvailability(Endpoint, TimeSpan.Zero, _time, NullLogger.Instance);
        view.Apply(Up(1));
        view.ReportInstanceDown(1).ShouldBeFalse();
        Ids(view.Available).ShouldBe([1UL]);
    }

    [Fact]
    public async Task Waiting_for_an_instance_completes_when_one_appears_and_times_out_otherwise()
    {
        var view = new InstanceAvailability(Endpoint, TimeSpan.FromSeconds(5), _time, NullLogger.Instance);
        var wait = view.WaitForAvailableAsync(TimeSpan.FromSeconds(30), _time, TestContext.Current.CancellationToken);
        wait.IsCompleted.ShouldBeFalse();
        view.Apply(Up(7));
        await wait.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);

        var empty = new InstanceAvailability(Endpoint, TimeSpan.FromSeconds(5), _time, NullLogger.Instance);
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
