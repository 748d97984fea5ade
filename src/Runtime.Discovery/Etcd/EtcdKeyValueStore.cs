using Microsoft.Extensions.Logging;

namespace RequestMigration.Discovery.Etcd;

/// <summary>etcd backend (being implemented; see issue 3).</summary>
public sealed class EtcdKeyValueStore : IKeyValueStore
{
    /// <summary>Not yet available.</summary>
    public EtcdKeyValueStore(EtcdStoreOptions options, TimeProvider? timeProvider = null, ILogger<EtcdKeyValueStore>? logger = null)
    {
        _ = options;
        _ = timeProvider;
        _ = logger;
        throw new NotSupportedException("the etcd store is not implemented yet");
    }

    /// <inheritdoc />
    public string Name => "etcd";

    /// <inheritdoc />
    public ValueTask<KeyValueEntry?> GetAsync(string key, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<KeyValueEntry>> ListAsync(string prefix, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    /// <inheritdoc />
    public ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, long leaseId = 0, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    /// <inheritdoc />
    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    /// <inheritdoc />
    public ValueTask<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    /// <inheritdoc />
    public ValueTask<bool> KeepAliveAsync(long leaseId, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    /// <inheritdoc />
    public ValueTask RevokeLeaseAsync(long leaseId, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    /// <inheritdoc />
    public IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    /// <inheritdoc />
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
