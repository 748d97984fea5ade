namespace RequestMigration.Discovery;

/// <summary>
/// A key-value store with leases and prefix watches: the one abstraction every discovery backend
/// (memory, file, etcd) implements. Keys are '/'-separated strings; values are opaque bytes.
/// </summary>
/// <remarks>
/// The contract follows etcd so that its semantics fit unchanged: every write gets a store-wide,
/// increasing revision; a key written with a lease disappears when the lease expires or is revoked;
/// a watch first replays what exists (a snapshot) and then reports changes in order.
/// All members are thread-safe.
/// </remarks>
public interface IKeyValueStore : IAsyncDisposable
{
    /// <summary>Short name of the backend (<c>mem</c>, <c>file</c> or <c>etcd</c>), for logs.</summary>
    string Name { get; }

    /// <summary>
    /// Whether lease ids are unique across every process sharing the store (etcd's are; the in-process
    /// stores' are only unique within one process). When true, an owner's lease id serves as its instance id.
    /// </summary>
    bool LeaseIdsAreShared => false;

    /// <summary>
    /// The store and where it keeps its data, for messages a person reads (<c>file at /tmp/dynamo_store_kv</c>,
    /// <c>etcd at http://127.0.0.1:2379</c>); never includes credentials. Backends without more to say return
    /// <see cref="Name"/>.
    /// </summary>
    string Description => Name;

    /// <summary>
    /// Why the store cannot be reached right now (its watches are failing and retrying), or null while it is
    /// reachable as far as the store knows. For messages: a router that finds no instance says so.
    /// </summary>
    string? UnreachableReason => null;

    /// <summary>
    /// Where a key is kept, for messages about a bad entry (the file store returns the file's path).
    /// Backends without a more useful answer return the key.
    /// </summary>
    string DescribeLocation(string key) => key;

    /// <summary>Reads one key; <see langword="null"/> when it does not exist (or has expired).</summary>
    ValueTask<KeyValueEntry?> GetAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>Lists every live key that starts with <paramref name="prefix"/>, ordered by key.</summary>
    ValueTask<IReadOnlyList<KeyValueEntry>> ListAsync(string prefix, CancellationToken cancellationToken = default);

    /// <summary>
    /// Creates or replaces a key. With a non-zero <paramref name="leaseId"/> the key is bound to that
    /// lease and is deleted when the lease ends.
    /// </summary>
    /// <exception cref="LeaseNotFoundException">The lease does not exist or has expired.</exception>
    ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, long leaseId = 0, CancellationToken cancellationToken = default);

    /// <summary>Deletes a key; returns whether it existed.</summary>
    ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>Grants a lease that lives for <paramref name="ttl"/> unless kept alive.</summary>
    ValueTask<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken = default);

    /// <summary>
    /// Renews a lease for another TTL. Returns <see langword="false"/> when the lease no longer exists
    /// (it expired or was revoked): its keys are gone and the owner must grant a new one.
    /// </summary>
    ValueTask<bool> KeepAliveAsync(long leaseId, CancellationToken cancellationToken = default);

    /// <summary>Ends a lease now and deletes every key bound to it. Unknown leases are ignored.</summary>
    ValueTask RevokeLeaseAsync(long leaseId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Watches every key under <paramref name="prefix"/>: first one <see cref="WatchEventKind.Put"/> per
    /// existing key, then <see cref="WatchEventKind.Synced"/>, then puts and deletes as they happen.
    /// Many watches may run at once. The sequence ends only when <paramref name="cancellationToken"/> is
    /// cancelled or the store is disposed. A backend that loses its connection resumes by itself and emits
    /// the difference it missed, so a consumer never has to restart the watch.
    /// </summary>
    IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, CancellationToken cancellationToken = default);
}
