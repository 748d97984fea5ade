using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;
using RequestMigration.Tools.Cli.Output;

namespace RequestMigration.Tools.Cli.Membership;

/// <summary>What a lease clock concludes about a deleted instance key.</summary>
/// <param name="Expired">Whether the key went when its lease ran out (rather than being deleted while the lease was live).</param>
/// <param name="LeaseId">The key's lease, where the store has shared lease ids (etcd); 0 otherwise.</param>
/// <param name="LastRenewed">When the key's lease was last seen renewed, where known.</param>
/// <param name="Reason">The conclusion in words, naming the lease.</param>
internal sealed record Verdict(bool Expired, long LeaseId, DateTimeOffset? LastRenewed, string Reason);

/// <summary>
/// Tells an expired instance from one that left, which a plain delete event cannot: it tracks when each key's
/// lease runs out while the key lives, and a key that vanishes at (or after) that deadline expired with its lease,
/// while one that vanishes long before it was deleted on purpose: a graceful shutdown deregisters while its lease
/// is still being renewed. Both stores renew at about a third of the TTL, which leaves a wide gap between the two.
/// </summary>
internal interface ILeaseClock
{
    /// <summary>How often <see cref="RefreshAsync"/> should run.</summary>
    TimeSpan Period { get; }

    /// <summary>Re-reads the deadline of every key in <paramref name="keys"/>.</summary>
    Task RefreshAsync(IReadOnlyCollection<string> keys, CancellationToken cancellationToken);

    /// <summary>Judges a key the watch just reported deleted, then forgets it.</summary>
    Verdict Judge(string key, DateTimeOffset now);
}

/// <summary>Creates the clock for a store.</summary>
internal static class LeaseClocks
{
    public static ILeaseClock For(StoreConnection connection, string keyPrefix) => connection.Store switch
    {
        EtcdKeyValueStore etcd => new EtcdLeaseClock(etcd, keyPrefix),
        _ when connection.Options.Store == StoreKind.File => new FileLeaseClock(connection.Store, connection.Options.File.Ttl),
        _ => new UnknownLeaseClock(),
    };
}

/// <summary>
/// etcd: each instance key is bound to its process's lease; the lease's time-to-live is read (never renewed) every
/// half second, giving a deadline no later than the real one (etcd reports whole seconds, truncated). A key deleted at
/// or after that deadline, less a little slack, went with its lease; a lease renewed at a third of its TTL is always
/// at least two thirds of it away from running out, so a deregistration lands well before. The slack covers a
/// reading that rounds up, which etcd's half-second expiry sweep mostly absorbs anyway.
/// </summary>
internal sealed class EtcdLeaseClock(EtcdKeyValueStore store, string keyPrefix) : ILeaseClock
{
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(0.6);
    private readonly Lock _gate = new();
    private readonly Dictionary<string, long> _leaseOfKey = new(StringComparer.Ordinal);
    private readonly Dictionary<long, (DateTimeOffset Deadline, DateTimeOffset SeenAt)> _deadlines = [];

    public TimeSpan Period => TimeSpan.FromMilliseconds(500);

    public async Task RefreshAsync(IReadOnlyCollection<string> keys, CancellationToken cancellationToken)
    {
        // Lease ids come from a read of the prefix: watch events don't carry them.
        var entries = await store.ListAsync(keyPrefix, cancellationToken).ConfigureAwait(false);
        lock (_gate)
        {
            foreach (var e in entries)
            {
                _leaseOfKey[e.Key] = e.LeaseId;
            }
        }

        foreach (var lease in entries.Select(e => e.LeaseId).Where(l => l != 0).Distinct())
        {
            var ttl = await store.GetLeaseTimeToLiveAsync(lease, cancellationToken).ConfigureAwait(false);
            if (ttl is { } left)
            {
                // A lease found gone is not recorded: the graceful path deletes the key, then revokes the lease,
                // and a read between the two must not make that look like an expiry.
                var now = DateTimeOffset.UtcNow;
                lock (_gate)
                {
                    _deadlines[lease] = (now + left, now);
                }
            }
        }
    }

    public Verdict Judge(string key, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (!_leaseOfKey.Remove(key, out var lease) || lease == 0)
            {
                return new Verdict(false, 0, null, "deleted (its lease was not known yet)");
            }

            if (!_deadlines.TryGetValue(lease, out var d))
            {
                return new Verdict(false, lease, null, $"deleted (lease {CliOutput.Lease(lease)} not read yet)");
            }

            if (!_leaseOfKey.ContainsValue(lease))
            {
                _deadlines.Remove(lease);
            }

            return now >= d.Deadline - Slack
                ? new Verdict(true, lease, null, $"lease {CliOutput.Lease(lease)} ran out: its owner stopped renewing it")
                : new Verdict(false, lease, d.SeenAt, $"deregistered (deleted while lease {CliOutput.Lease(lease)} had {(d.Deadline - now).TotalSeconds:0.#} s left)");
        }
    }
}

/// <summary>
/// File store: a key lives while its owner keeps touching the file (every max(TTL/3, 1 s)); any process removes a
/// file untouched for the TTL. The file's modification time is read every half second, so a key whose file was
/// last touched a TTL or more before it vanished expired, and one still being touched was deleted on purpose.
/// Every process sharing the store must use the same TTL (<c>DYN_LEASE_TTL_SECS</c>), rmctl included.
/// </summary>
internal sealed class FileLeaseClock(IKeyValueStore store, TimeSpan ttl) : ILeaseClock
{
    private static readonly TimeSpan Slack = TimeSpan.FromMilliseconds(250);
    private readonly Lock _gate = new();
    private readonly Dictionary<string, DateTimeOffset> _touched = new(StringComparer.Ordinal);

    public TimeSpan Period => TimeSpan.FromMilliseconds(500);

    public Task RefreshAsync(IReadOnlyCollection<string> keys, CancellationToken cancellationToken)
    {
        foreach (var key in keys)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                var info = new FileInfo(store.DescribeLocation(key));
                if (info.Exists)
                {
                    lock (_gate)
                    {
                        _touched[key] = new DateTimeOffset(info.LastWriteTimeUtc, TimeSpan.Zero);
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Gone or unreadable between listing and reading: the watch reports what became of it.
            }
        }

        return Task.CompletedTask;
    }

    public Verdict Judge(string key, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (!_touched.Remove(key, out var touched))
            {
                return new Verdict(false, 0, null, "deleted (its file was never read)");
            }

            var idle = now - touched;
            return now >= touched + ttl - Slack
                ? new Verdict(true, 0, touched, $"lease ran out: its file was not refreshed for {idle.TotalSeconds:0.#} s (TTL {ttl.TotalSeconds:0.#} s); its process is gone")
                : new Verdict(false, 0, touched, $"deregistered (deleted while its file was still refreshed, {idle.TotalSeconds:0.#} s ago; TTL {ttl.TotalSeconds:0.#} s)");
        }
    }
}

/// <summary>Stores without a notion of lease rmctl can read: every delete is reported as a departure.</summary>
internal sealed class UnknownLeaseClock : ILeaseClock
{
    public TimeSpan Period => TimeSpan.FromSeconds(1);

    public Task RefreshAsync(IReadOnlyCollection<string> keys, CancellationToken cancellationToken) => Task.CompletedTask;

    public Verdict Judge(string key, DateTimeOffset now) => new(false, 0, null, "deleted");
}
