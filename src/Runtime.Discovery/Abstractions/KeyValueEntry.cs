namespace RequestMigration.Discovery;

/// <summary>One key and its value as read from a store.</summary>
/// <param name="Key">The full key.</param>
/// <param name="Value">The value bytes.</param>
/// <param name="ModRevision">Store revision of the last write of this key (0 where a backend has none).</param>
/// <param name="LeaseId">The lease the key is bound to, or 0.</param>
public sealed record KeyValueEntry(string Key, ReadOnlyMemory<byte> Value, long ModRevision, long LeaseId);

/// <summary>What a <see cref="WatchEvent"/> reports.</summary>
public enum WatchEventKind
{
    /// <summary>The key was created or replaced; <see cref="WatchEvent.Value"/> holds the new value.</summary>
    Put,

    /// <summary>The key was deleted or its lease ended.</summary>
    Delete,

    /// <summary>The initial snapshot has been delivered in full; later events are live changes.</summary>
    Synced,
}

/// <summary>A change under a watched prefix.</summary>
/// <param name="Kind">Put, delete or the end of the snapshot.</param>
/// <param name="Key">The key (empty for <see cref="WatchEventKind.Synced"/>).</param>
/// <param name="Value">The new value for puts; empty otherwise.</param>
/// <param name="Revision">Store revision of the change (0 where a backend has none).</param>
public readonly record struct WatchEvent(WatchEventKind Kind, string Key, ReadOnlyMemory<byte> Value, long Revision)
{
    /// <summary>The marker that ends the snapshot.</summary>
    public static WatchEvent SyncedMarker(long revision) => new(WatchEventKind.Synced, string.Empty, ReadOnlyMemory<byte>.Empty, revision);
}

/// <summary>Thrown when a write names a lease that does not exist (expired or revoked).</summary>
public sealed class LeaseNotFoundException(long leaseId)
    : InvalidOperationException($"lease {leaseId:x} not found (expired or revoked)")
{
    /// <summary>The lease that was not found.</summary>
    public long LeaseId { get; } = leaseId;
}

/// <summary>Thrown when the store itself cannot be reached or used; the message names the backend and where.</summary>
public sealed class StoreUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
