using RequestMigration.Discovery;
using RequestMigration.Discovery.Memory;

namespace RequestMigration.Tests.Infrastructure;

/// <summary>
/// An in-memory store whose lease grants and puts can be held at a gate, so a test can act (say, stop a
/// server) while a start-up is inside one of them.
/// </summary>
internal sealed class GatedStore(MemoryKeyValueStore inner) : IKeyValueStore
{
    private readonly TaskCompletionSource _grantEntered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _putEntered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Hold every lease grant until <see cref="Release"/>.</summary>
    public bool HoldGrants { get; init; }

    /// <summary>Hold every put until <see cref="Release"/>.</summary>
    public bool HoldPuts { get; init; }

    /// <summary>Completes when a held grant is waiting.</summary>
    public Task GrantEntered => _grantEntered.Task;

    /// <summary>Completes when a held put is waiting.</summary>
    public Task PutEntered => _putEntered.Task;

    public string Name => inner.Name;

    public void Release() => _release.TrySetResult();

    public ValueTask<KeyValueEntry?> GetAsync(string key, CancellationToken cancellationToken = default) => inner.GetAsync(key, cancellationToken);

    public ValueTask<IReadOnlyList<KeyValueEntry>> ListAsync(string prefix, CancellationToken cancellationToken = default) => inner.ListAsync(prefix, cancellationToken);

    public async ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, long leaseId = 0, CancellationToken cancellationToken = default)
    {
        if (HoldPuts)
        {
            _putEntered.TrySetResult();
            await _release.Task;
        }

        await inner.PutAsync(key, value, leaseId, cancellationToken);
    }

    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken = default) => inner.DeleteAsync(key, cancellationToken);

    public async ValueTask<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        if (HoldGrants)
        {
            _grantEntered.TrySetResult();
            await _release.Task;
        }

        return await inner.GrantLeaseAsync(ttl, cancellationToken);
    }

    public ValueTask<bool> KeepAliveAsync(long leaseId, CancellationToken cancellationToken = default) => inner.KeepAliveAsync(leaseId, cancellationToken);

    public ValueTask RevokeLeaseAsync(long leaseId, CancellationToken cancellationToken = default) => inner.RevokeLeaseAsync(leaseId, cancellationToken);

    public IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, CancellationToken cancellationToken = default) => inner.WatchAsync(prefix, cancellationToken);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
