namespace RequestMigration.Discovery.Instances;

/// <summary>
/// Instance records in a discovery store, for callers that publish or inspect instances themselves rather than
/// through a server: fixed addresses a router should reach (a store of its own, say a
/// <see cref="Memory.MemoryKeyValueStore"/>, passed to the runtime), or tools that show what discovery holds.
/// Records are written where servers write theirs (<see cref="InstanceKeys.Key"/>) in the same JSON, so routers
/// cannot tell them apart.
/// </summary>
public static class InstanceStoreExtensions
{
    /// <summary>Writes (or replaces) <paramref name="record"/> under its key.</summary>
    /// <param name="store">The discovery store.</param>
    /// <param name="record">The record; its endpoint and instance id make the key.</param>
    /// <param name="leaseId">
    /// A lease from <see cref="IKeyValueStore.GrantLeaseAsync"/> the record lives and dies with, or 0 for none
    /// (the file store then keeps the record while this store object is open, and deletes it on dispose).
    /// </param>
    /// <param name="cancellationToken">Abandons the write.</param>
    /// <exception cref="LeaseNotFoundException">The lease does not exist or has expired.</exception>
    public static ValueTask PutInstanceAsync(this IKeyValueStore store, InstanceRecord record, long leaseId = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(record);
        return new InstanceRegistry(store).PutAsync(record, leaseId, cancellationToken);
    }

    /// <summary>Deletes the record of one instance of <paramref name="endpoint"/>; false when there was none.</summary>
    /// <param name="store">The discovery store.</param>
    /// <param name="endpoint">The endpoint the instance serves.</param>
    /// <param name="instanceId">The instance.</param>
    /// <param name="cancellationToken">Abandons the delete.</param>
    public static ValueTask<bool> DeleteInstanceAsync(this IKeyValueStore store, EndpointId endpoint, ulong instanceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        return new InstanceRegistry(store).DeleteAsync(endpoint, instanceId, cancellationToken);
    }

    /// <summary>
    /// The records of <paramref name="endpoint"/> as routers read them, ordered by instance id. Entries that are
    /// not valid records (undecodable, or not matching their key) are left out, as routers leave them out.
    /// </summary>
    /// <param name="store">The discovery store.</param>
    /// <param name="endpoint">The endpoint.</param>
    /// <param name="cancellationToken">Abandons the read.</param>
    public static async ValueTask<IReadOnlyList<InstanceRecord>> ListInstancesAsync(this IKeyValueStore store, EndpointId endpoint, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        var records = await new InstanceRegistry(store).ListAsync(endpoint, cancellationToken).ConfigureAwait(false);
        return [.. records.OrderBy(r => r.InstanceId)];
    }
}
