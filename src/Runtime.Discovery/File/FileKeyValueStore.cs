using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace RequestMigration.Discovery.File;

/// <summary>
/// A store in a directory shared by the processes of one machine (or a shared mount): one file per key,
/// written to a temp file and renamed into place so a reader never sees half a value. Liveness is the
/// file's modification time: the owner refreshes it every max(TTL/3, 1 s); any process treats files older
/// than the TTL as gone and removes them, which cleans up after a crashed process.
/// </summary>
/// <remarks>
/// Leases are owned by this process: a key put with a lease is refreshed while the lease is kept alive
/// and deleted when it expires or is revoked. Keys put without a lease are refreshed until the store is
/// disposed. Disposing deletes every file this instance owns. Revisions are not tracked (always 0).
/// </remarks>
public sealed partial class FileKeyValueStore : IKeyValueStore
{
    private readonly string _root;
    private readonly FileStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();

    // Keys this instance wrote, with the value (to rewrite a file another process removed) and lease.
    private readonly Dictionary<string, Owned> _owned = new(StringComparer.Ordinal);
    private readonly LeaseTable _leases;
    private readonly List<ChannelWriter<bool>> _watchSignals = [];
    private readonly ITimer _refresher;
    private bool _disposed;

    /// <summary>
    /// Opens (and creates if needed) the store's root directory. The default one, in the shared temp directory,
    /// is made private to the user (mode 0700) and refused if another user owns it.
    /// </summary>
    /// <exception cref="UnauthorizedAccessException">The default directory belongs to another user; set <c>DYN_FILE_KV</c>.</exception>
    public FileKeyValueStore(FileStoreOptions? options = null, TimeProvider? timeProvider = null, ILogger<FileKeyValueStore>? logger = null)
    {
        _options = options ?? new FileStoreOptions();
        _options.Validate();
        _time = timeProvider ?? TimeProvider.System;
        _leases = new LeaseTable(_time);
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _root = _options.ResolveRoot();
        if (_options.UsesDefaultRoot)
        {
            PrivateDirectory.Ensure(_root);
        }
        else
        {
            Directory.CreateDirectory(_root);
        }

        var period = TimeSpan.FromTicks(Math.Max(_options.Ttl.Ticks / 3, TimeSpan.TicksPerSecond));
        _refresher = _time.CreateTimer(static s => ((FileKeyValueStore)s!).Refresh(), this, period, period);
    }

    /// <summary>The root directory in use.</summary>
    public string Root => _root;

    /// <inheritdoc />
    public string Name => "file";

    /// <inheritdoc />
    public string Description => $"file at {_root}";

    /// <summary>The file that holds <paramref name="key"/>.</summary>
    public string DescribeLocation(string key) => FileKeyPaths.ToPath(_root, key);

    /// <inheritdoc />
    public ValueTask<KeyValueEntry?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        KeyValidation.ThrowIfInvalid(key);
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfDisposed();
        var path = FileKeyPaths.ToPath(_root, key);
        return ValueTask.FromResult(TryRead(path, out var value) ? new KeyValueEntry(key, value, 0, LeaseOf(key)) : null);
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<KeyValueEntry>> ListAsync(string prefix, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfDisposed();
        var list = new List<KeyValueEntry>();
        foreach (var (key, value) in Scan(prefix))
        {
            list.Add(new KeyValueEntry(key, value, 0, LeaseOf(key)));
        }

        return ValueTask.FromResult<IReadOnlyList<KeyValueEntry>>(list);
    }

    /// <inheritdoc />
    public ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, long leaseId = 0, CancellationToken cancellationToken = default)
    {
        KeyValidation.ThrowIfInvalid(key);
        cancellationToken.ThrowIfCancellationRequested();
        var copy = value.ToArray();
        lock (_gate)
        {
            ThrowIfDisposed();
            ExpireLeases();
            if (leaseId != 0 && !_leases.Exists(leaseId))
            {
                throw new LeaseNotFoundException(leaseId);
            }

            WriteAtomically(FileKeyPaths.ToPath(_root, key), copy);
            if (_owned.TryGetValue(key, out var old))
            {
                _leases.Unbind(old.LeaseId, key);
            }

            _owned[key] = new Owned(copy, leaseId);
            _leases.Bind(leaseId, key);
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        KeyValidation.ThrowIfInvalid(key);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            return ValueTask.FromResult(DeleteOwnedOrForeign(key));
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
        ThrowIfDisposed();

        // File-system events only say "look again": each wake-up rescans and diffs against what this
        // watch last reported, so a missed, merged or duplicated notification cannot lose or repeat an
        // event. The periodic rescan covers platforms and mounts where notifications never arrive.
        var signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
        var searchRoot = FileKeyPaths.SearchRoot(_root, prefix);
        Directory.CreateDirectory(searchRoot);
        using var fsw = TryWatch(searchRoot, signal.Writer);
        using var timer = _time.CreateTimer(static s => ((ChannelWriter<bool>)s!).TryWrite(true), signal.Writer, _options.RescanInterval, _options.RescanInterval);
        lock (_gate)
        {
            ThrowIfDisposed();
            _watchSignals.Add(signal.Writer);
        }

        try
        {
            var known = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            foreach (var (key, value) in Scan(prefix))
            {
                known[key] = value;
                yield return new WatchEvent(WatchEventKind.Put, key, value, 0);
            }

            yield return WatchEvent.SyncedMarker(0);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            while (await signal.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                signal.Reader.TryRead(out _);
                seen.Clear();
                foreach (var (key, value) in Scan(prefix))
                {
                    seen.Add(key);
                    if (!known.TryGetValue(key, out var old) || !old.AsSpan().SequenceEqual(value))
                    {
                        known[key] = value;
                        yield return new WatchEvent(WatchEventKind.Put, key, value, 0);
                    }
                }

                if (seen.Count != known.Count)
                {
                    foreach (var key in known.Keys.Where(k => !seen.Contains(k)).ToList())
                    {
                        known.Remove(key);
                        yield return new WatchEvent(WatchEventKind.Delete, key, ReadOnlyMemory<byte>.Empty, 0);
                    }
                }
            }
        }
        finally
        {
            lock (_gate)
            {
                _watchSignals.Remove(signal.Writer);
            }
        }
    }

    /// <summary>Deletes every file this instance owns, then stops refreshing.</summary>
    public ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return ValueTask.CompletedTask;
            }

            _disposed = true;
            foreach (var key in _owned.Keys)
            {
                TryDelete(FileKeyPaths.ToPath(_root, key));
            }

            _owned.Clear();
            _leases.Clear();
            foreach (var w in _watchSignals)
            {
                w.TryComplete();
            }

            _watchSignals.Clear();
        }

        _refresher.Dispose();
        return ValueTask.CompletedTask;
    }

    private long LeaseOf(string key)
    {
        lock (_gate)
        {
            return _owned.TryGetValue(key, out var o) ? o.LeaseId : 0;
        }
    }

    /// <summary>
    /// A file-system watcher that pokes <paramref name="signal"/>, or null when none can be created (on Linux
    /// each one takes an inotify instance, 128 per user by default): the watch then runs on its periodic
    /// rescan alone, slower to notice changes but just as complete.
    /// </summary>
    private FileSystemWatcher? TryWatch(string directory, ChannelWriter<bool> signal)
    {
        FileSystemWatcher? fsw = null;
        try
        {
            fsw = new FileSystemWatcher(directory) { IncludeSubdirectories = true };
            void Poke(object? sender, EventArgs e) => signal.TryWrite(true);
            fsw.Created += Poke;
            fsw.Changed += Poke;
            fsw.Deleted += Poke;
            fsw.Renamed += Poke;
            fsw.Error += Poke;
            fsw.EnableRaisingEvents = true;
            return fsw;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or PlatformNotSupportedException or ArgumentException)
        {
            fsw?.Dispose();
            LogNoWatcher(directory, ex.Message, _options.RescanInterval.TotalMilliseconds);
            return null;
        }
    }

    private List<(string Key, byte[] Value)> Scan(string prefix)
    {
        var result = new List<(string, byte[])>();
        var searchRoot = FileKeyPaths.SearchRoot(_root, prefix);
        if (!Directory.Exists(searchRoot))
        {
            return result;
        }

        IEnumerable<string> files;
        try
        {
            files = Directory.EnumerateFiles(searchRoot, "*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, MaxRecursionDepth = 3 });
            foreach (var path in files)
            {
                if (!FileKeyPaths.TryToKey(_root, path, out var key))
                {
                    if (Path.GetFileName(path).StartsWith(FileKeyPaths.TempPrefix, StringComparison.Ordinal))
                    {
                        RemoveIfStale(path);
                    }
                    else if (!Path.GetFileName(path).StartsWith('.'))
                    {
                        LogUndecodable(path);
                    }

                    continue;
                }

                if (key.StartsWith(prefix, StringComparison.Ordinal) && TryRead(path, out var value))
                {
                    result.Add((key, value));
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // A directory removed while enumerating: the next rescan sees the settled state.
            LogScanFailed(searchRoot, ex.Message);
        }

        result.Sort(static (a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        return result;
    }

    /// <summary>A temp file older than the TTL was left by a writer that died mid-write.</summary>
    private void RemoveIfStale(string path)
    {
        try
        {
            if (_time.GetUtcNow().UtcDateTime - System.IO.File.GetLastWriteTimeUtc(path) > _options.Ttl)
            {
                TryDelete(path);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }

    private bool TryRead(string path, out byte[] value)
    {
        value = [];
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                return false;
            }

            if (_time.GetUtcNow().UtcDateTime - info.LastWriteTimeUtc > _options.Ttl)
            {
                // Its owner stopped refreshing it: the process is gone. Whoever notices removes it.
                TryDelete(path);
                LogExpired(path);
                return false;
            }

            value = System.IO.File.ReadAllBytes(path);
            return true;
        }
        catch (FileNotFoundException)
        {
            return false;
        }
        catch (DirectoryNotFoundException)
        {
            return false;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogUnreadable(path, ex.Message);
            return false;
        }
    }

    private void WriteAtomically(string path, byte[] value)
    {
        var dir = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(dir);
        var temp = Path.Combine(dir, FileKeyPaths.TempPrefix + Guid.NewGuid().ToString("N"));
        try
        {
            System.IO.File.WriteAllBytes(temp, value);
            System.IO.File.SetLastWriteTimeUtc(temp, _time.GetUtcNow().UtcDateTime);
            System.IO.File.Move(temp, path, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new StoreUnavailableException($"file store: cannot write '{path}': {ex.Message}", ex);
        }
    }

    private void Refresh()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            ExpireLeases();
            var now = _time.GetUtcNow().UtcDateTime;
            foreach (var (key, owned) in _owned)
            {
                var path = FileKeyPaths.ToPath(_root, key);
                try
                {
                    if (System.IO.File.Exists(path))
                    {
                        System.IO.File.SetLastWriteTimeUtc(path, now);
                    }
                    else
                    {
                        // Another process judged it stale (we were paused too long): put it back.
                        WriteAtomically(path, owned.Value);
                    }
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or StoreUnavailableException)
                {
                    LogRefreshFailed(path, ex.Message);
                }
            }
        }
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
            _owned.Remove(key);
            TryDelete(FileKeyPaths.ToPath(_root, key));
        }
    }

    private bool DeleteOwnedOrForeign(string key)
    {
        if (_owned.Remove(key, out var owned))
        {
            _leases.Unbind(owned.LeaseId, key);
        }

        return TryDelete(FileKeyPaths.ToPath(_root, key));
    }

    private static bool TryDelete(string path)
    {
        try
        {
            if (!System.IO.File.Exists(path))
            {
                return false;
            }

            System.IO.File.Delete(path);
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    [LoggerMessage(Level = LogLevel.Warning, Message = "file store: skipping '{Path}': cannot read it ({Reason})")]
    private partial void LogUnreadable(string path, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "file store: skipping '{Path}': its name is not a percent-encoded key")]
    private partial void LogUndecodable(string path);

    [LoggerMessage(Level = LogLevel.Debug, Message = "file store: removed expired '{Path}' (owner stopped refreshing it)")]
    private partial void LogExpired(string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "file store: scanning '{Path}' failed ({Reason}); retrying on the next rescan")]
    private partial void LogScanFailed(string path, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "file store: cannot watch '{Path}' for changes ({Reason}); rescanning every {IntervalMs} ms instead")]
    private partial void LogNoWatcher(string path, string reason, double intervalMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "file store: cannot refresh '{Path}' ({Reason})")]
    private partial void LogRefreshFailed(string path, string reason);

    private sealed record Owned(byte[] Value, long LeaseId);
}
