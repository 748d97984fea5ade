namespace RequestMigration.Discovery.Etcd;

/// <summary>One change as etcd reports it, before it is checked against what a watch already delivered.</summary>
/// <param name="Kind">Put or delete.</param>
/// <param name="Key">The key.</param>
/// <param name="Value">The new value of a put.</param>
/// <param name="ModRevision">The revision of the change.</param>
internal readonly record struct EtcdChange(WatchEventKind Kind, string Key, ReadOnlyMemory<byte> Value, long ModRevision);

/// <summary>
/// What one watch has delivered so far: the revision up to which every change has been reported, and the
/// mod-revision of every key it reported as present. Everything that reaches the consumer passes through
/// here, so an event etcd replays after a reconnect (or the client library delivers twice) is dropped,
/// and a resync after compaction emits only the difference.
/// </summary>
/// <remarks>Not thread-safe: each watch owns one and uses it from its single pump.</remarks>
internal sealed class EtcdWatchState
{
    private readonly Dictionary<string, long> _known = new(StringComparer.Ordinal);

    /// <summary>Every change at or below this revision has been delivered (or was superseded by a snapshot).</summary>
    public long Revision { get; private set; }

    /// <summary>Whether the first snapshot (and its <see cref="WatchEventKind.Synced"/> marker) has been delivered.</summary>
    public bool Synced { get; private set; }

    /// <summary>The keys currently reported as present.</summary>
    public int Count => _known.Count;

    /// <summary>
    /// Applies a full read of the prefix taken at <paramref name="revision"/>. The first one yields a put
    /// per key and the synced marker; later ones (after compaction made resuming impossible) yield puts
    /// for new or changed keys and deletes for keys that vanished meanwhile.
    /// </summary>
    public List<WatchEvent> ApplySnapshot(IReadOnlyList<KeyValueEntry> entries, long revision)
    {
        var events = new List<WatchEvent>();
        if (Synced && revision < Revision)
        {
            // Older than what was already delivered (a lagging member): applying it would roll the view back.
            return events;
        }

        var present = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in entries)
        {
            present.Add(e.Key);
            if (!_known.TryGetValue(e.Key, out var rev) || rev != e.ModRevision)
            {
                _known[e.Key] = e.ModRevision;
                events.Add(new WatchEvent(WatchEventKind.Put, e.Key, e.Value, e.ModRevision));
            }
        }

        if (present.Count != _known.Count)
        {
            var gone = _known.Keys.Where(k => !present.Contains(k)).Order(StringComparer.Ordinal).ToList();
            foreach (var key in gone)
            {
                _known.Remove(key);
                events.Add(new WatchEvent(WatchEventKind.Delete, key, ReadOnlyMemory<byte>.Empty, revision));
            }
        }

        Revision = Math.Max(Revision, revision);
        if (!Synced)
        {
            Synced = true;
            events.Add(WatchEvent.SyncedMarker(revision));
        }

        return events;
    }

    /// <summary>
    /// Applies the events of one watch response. etcd never splits one revision over two responses, so the
    /// whole batch is compared with the revision reached before it: several keys deleted by one lease
    /// expiry share a revision and must all pass, while anything at or below the earlier revision is a replay.
    /// </summary>
    public List<WatchEvent> ApplyBatch(IReadOnlyList<EtcdChange> changes)
    {
        var events = new List<WatchEvent>(changes.Count);
        var floor = Revision;
        var reached = floor;
        foreach (var c in changes)
        {
            if (c.ModRevision <= floor)
            {
                continue;
            }

            reached = Math.Max(reached, c.ModRevision);
            if (c.Kind == WatchEventKind.Put)
            {
                _known[c.Key] = c.ModRevision;
                events.Add(new WatchEvent(WatchEventKind.Put, c.Key, c.Value, c.ModRevision));
            }
            else if (_known.Remove(c.Key))
            {
                events.Add(new WatchEvent(WatchEventKind.Delete, c.Key, ReadOnlyMemory<byte>.Empty, c.ModRevision));
            }
        }

        Revision = reached;
        return events;
    }
}
