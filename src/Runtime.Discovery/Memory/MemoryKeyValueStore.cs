using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace RequestMigration.Discovery.Memory;

/// <summary>
/// In-process store: honours lease TTLs (measured with the injected <see cref="TimeProvider"/>) and
/// supports any number of watchers. Shared only by code in the same process, so it suits tests and
/// single-process demos.
/// </summary>
public sealed class MemoryKeyValueStore : IKeyValueStore
{
    // Invariants, all guarded by _gate:
    //  - _revision grows by one per change; every Entry.ModRevision and every event revision comes from it.
    //  - a key bound to a lease is listed in that lease's Keys set, and vice versa.
    //  - every change is written to every matching watcher channel while _gate is held, so each watcher
    //    sees changes in revision order and none between its snapshot and its first live event is lost.
    private readonly Lock _gate = new();
    private readonly SortedDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly List<Watcher> _watchers = [];
    private readonly TimeProvider _time;
    private readonly LeaseTable _leases;
    private readonly ITimer _sweeper;
    private long _revision;
    private bool _disposed;

    /// <summary>Creates an empty store.</summary>
    /// <param name="timeProvider">Clock for lease expiry; defaults to the system clock.</param>
    public MemoryKeyValueStore(TimeProvider? timeProvider = null)
    {
        _time = timeProvider ?? TimeProvider.System;
        _leases = new LeaseTable(_time);
        // Expired leases are also removed lazily on every call; the sweeper makes watchers see the
        // deletes even when nobody calls in.
        _sweeper = _time.CreateTimer(static s => ((MemoryKeyValueStore)s!).Sweep(), this, TimeSpan.FromMilliseconds(250), TimeSpan.FromMilliseconds(250));
    }

    /// <inheritdoc />
    public string Name => "mem";

    /// <inheritdoc />
    public string Description => "mem (in this process only)";

    /// <inheritdoc />
    public ValueTask<KeyValueEntry?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            ExpireLeases();
            return ValueTask.FromResult(_entries.TryGetValue(key, out var e) ? e.ToEntry(key) : null);
        }
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<KeyValueEntry>> ListAsync(string prefix, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            ExpireLeases();
            return ValueTask.FromResult<IReadOnlyList<KeyValueEntry>>(Snapshot(prefix));
        }
    }

    /// <inheritdoc />
    public ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, long leaseId = 0, CancellationToken cancellationToken = default)
    {
        KeyValidation.ThrowIfInvalid(key);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            ExpireLeases();
            if (leaseId != 0 && !_leases.Exists(leaseId))
            {
                throw new LeaseNotFoundException(leaseId);
            }

            if (_entries.TryGetValue(key, out var old) && old.LeaseId != leaseId)
            {
                _leases.Unbind(old.LeaseId, key);
            }

            _leases.Bind(leaseId, key);
            var copy = value.ToArray();
            var rev = ++_revision;
            _entries[key] = new Entry(copy, rev, leaseId);
            Publish(new WatchEvent(WatchEventKind.Put, key, copy, rev));
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            ExpireLeases();
            return ValueTask.FromResult(RemoveKey(key));
        }
    }

    /// <inheritdoc />
    public ValueTask<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            var id = _leases.Grant(ttl);
            return ValueTask.FromResult(id);
        }
    }

    /// <inheritdoc />
    public ValueTask<bool> KeepAliveAsync(long leaseId, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            ExpireLeases();
            return ValueTask.FromResult(_leases.KeepAlive(leaseId));
        }
    }

    /// <inheritdoc />
    public ValueTask RevokeLeaseAsync(long leaseId, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            EndLease(leaseId);
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var channel = Channel.CreateUnbounded<WatchEvent>(new UnboundedChannelOptions { SingleReader = true });
        var watcher = new Watcher(prefix, channel.Writer);
        lock (_gate)
        {
            ThrowIfDisposed();
            ExpireLeases();
            foreach (var e in Snapshot(prefix))
            {
                channel.Writer.TryWrite(new WatchEvent(WatchEventKind.Put, e.Key, e.Value, e.ModRevision));
            }

            channel.Writer.TryWrite(WatchEvent.SyncedMarker(_revision));
            _watchers.Add(watcher);
        }

        try
        {
            await foreach (var ev in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                yield return ev;
            }
        }
        finally
        {
            lock (_gate)
            {
                _watchers.Remove(watcher);
            }
        }
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return ValueTask.CompletedTask;
            }

            _disposed = true;
            foreach (var w in _watchers)
            {
                w.Writer.TryComplete();
            }

            _watchers.Clear();
        }

        _sweeper.Dispose();
        return ValueTask.CompletedTask;
    }

    private void Sweep()
    {
        lock (_gate)
        {
            if (!_disposed)
            {
                ExpireLeases();
            }
        }
    }

    private List<KeyValueEntry> Snapshot(string prefix)
    {
        var list = new List<KeyValueEntry>();
        foreach (var (key, e) in _entries)
        {
            if (key.StartsWith(prefix, StringComparison.Ordinal))
            {
                list.Add(e.ToEntry(key));
            }
        }

        return list;
    }

    private void ExpireLeases()
    {
        foreach (var id in _leases.Expired() ?? [])
        {
            EndLease(id);
        }
    }

    private void EndLease(long leaseId)
    {
        foreach (var key in _leases.Remove(leaseId) ?? [])
        {
            RemoveKey(key);
        }
    }

    private bool RemoveKey(string key)
    {
        if (!_entries.Remove(key, out var old))
        {
            return false;
        }

        _leases.Unbind(old.LeaseId, key);

        Publish(new WatchEvent(WatchEventKind.Delete, key, ReadOnlyMemory<byte>.Empty, ++_revision));
        return true;
    }

    private void Publish(WatchEvent ev)
    {
        foreach (var w in _watchers)
        {
            if (ev.Key.StartsWith(w.Prefix, StringComparison.Ordinal))
            {
                w.Writer.TryWrite(ev);
            }
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private sealed record Entry(byte[] Value, long ModRevision, long LeaseId)
    {
        public KeyValueEntry ToEntry(string key) => new(key, Value, ModRevision, LeaseId);
    }

    private sealed record Watcher(string Prefix, ChannelWriter<WatchEvent> Writer);
}
