using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Etcd.EtcdTestSupport;

namespace RequestMigration.Tests.Etcd;

/// <summary>
/// The part of the etcd watch that decides what reaches the consumer: replays are dropped, a resync reports only
/// the difference. Runs without etcd.
/// </summary>
public sealed class EtcdWatchStateTests
{
    private static KeyValueEntry E(string key, string value, long rev) => new(key, B(value), rev, 0);

    private static EtcdChange Put(string key, string value, long rev) => new(WatchEventKind.Put, key, B(value), rev);

    private static EtcdChange Del(string key, long rev) => new(WatchEventKind.Delete, key, ReadOnlyMemory<byte>.Empty, rev);

    [Fact]
    public void First_snapshot_reports_every_key_then_the_synced_marker()
    {
        var state = new EtcdWatchState();
        var events = state.ApplySnapshot([E("p/a", "1", 3), E("p/b", "2", 5)], 7);
        events.Select(e => (e.Kind, e.Key)).ShouldBe([(WatchEventKind.Put, "p/a"), (WatchEventKind.Put, "p/b"), (WatchEventKind.Synced, "")]);
        events[^1].Revision.ShouldBe(7);
        state.Revision.ShouldBe(7);
    }

    [Fact]
    public void A_replayed_or_duplicated_event_changes_nothing()
    {
        var state = new EtcdWatchState();
        state.ApplySnapshot([E("p/a", "1", 3)], 4);

        // Already covered by the snapshot (the watch started a little early, or the library replays it).
        state.ApplyBatch([Put("p/a", "1", 3), Put("p/x", "old", 4)]).ShouldBeEmpty();

        var live = state.ApplyBatch([Put("p/b", "2", 5), Put("p/a", "9", 6)]);
        live.Select(e => (e.Key, S(e.Value), e.Revision)).ShouldBe([("p/b", "2", 5L), ("p/a", "9", 6L)]);

        // The same response delivered again after a reconnect, and an older one: nothing.
        state.ApplyBatch([Put("p/b", "2", 5), Put("p/a", "9", 6)]).ShouldBeEmpty();
        state.ApplyBatch([Put("p/b", "2", 5)]).ShouldBeEmpty();
        state.Revision.ShouldBe(6);
        state.Count.ShouldBe(2);
    }

    [Fact]
    public void Keys_deleted_in_one_revision_are_all_reported_once()
    {
        var state = new EtcdWatchState();
        state.ApplySnapshot([E("p/a", "1", 3), E("p/b", "2", 3), E("p/c", "3", 4)], 4);

        // One lease expiry deletes both keys at the same revision.
        var gone = state.ApplyBatch([Del("p/a", 8), Del("p/b", 8)]);
        gone.Select(e => (e.Kind, e.Key)).ShouldBe([(WatchEventKind.Delete, "p/a"), (WatchEventKind.Delete, "p/b")]);
        state.ApplyBatch([Del("p/a", 8), Del("p/b", 8)]).ShouldBeEmpty();

        // A delete of a key this watch never reported as present is not news to the consumer.
        state.ApplyBatch([Del("p/zz", 9)]).ShouldBeEmpty();
        state.Revision.ShouldBe(9);
    }

    [Fact]
    public void Resync_after_compaction_reports_only_the_difference()
    {
        var state = new EtcdWatchState();
        state.ApplySnapshot([E("p/same", "1", 3), E("p/changed", "1", 4), E("p/deleted", "1", 5)], 5);

        var diff = state.ApplySnapshot([E("p/added", "1", 9), E("p/changed", "2", 8), E("p/same", "1", 3)], 12);
        diff.Select(e => (e.Kind, e.Key)).ShouldBe(
        [
            (WatchEventKind.Put, "p/added"),
            (WatchEventKind.Put, "p/changed"),
            (WatchEventKind.Delete, "p/deleted"),
        ]);
        diff.ShouldNotContain(e => e.Kind == WatchEventKind.Synced);
        state.Revision.ShouldBe(12);

        // Events the resumed stream may still carry from before the resync point are replays.
        state.ApplyBatch([Put("p/changed", "2", 8), Del("p/deleted", 10)]).ShouldBeEmpty();
    }

    [Fact]
    public void A_snapshot_older_than_what_was_delivered_is_ignored()
    {
        var state = new EtcdWatchState();
        state.ApplySnapshot([E("p/a", "1", 3)], 4);
        state.ApplyBatch([Put("p/b", "1", 6)]);
        state.ApplySnapshot([E("p/a", "1", 3)], 5).ShouldBeEmpty();
        state.Revision.ShouldBe(6);
        state.Count.ShouldBe(2);
    }
}
