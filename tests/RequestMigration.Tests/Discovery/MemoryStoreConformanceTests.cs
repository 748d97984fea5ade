using Microsoft.Extensions.Time.Testing;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Memory;

namespace RequestMigration.Tests.Discovery;

/// <summary>The mem backend on a fake clock: lease expiry is driven by advancing time, not by sleeping.</summary>
public sealed class MemoryStoreConformanceTests : StoreConformanceTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
    private MemoryKeyValueStore? _shared;

    protected override ValueTask<IKeyValueStore> OpenStoreAsync() =>
        ValueTask.FromResult<IKeyValueStore>(new SharedView(_shared ??= new MemoryKeyValueStore(_time)));

    protected override Task AdvanceAsync(TimeSpan by)
    {
        _time.Advance(by);
        return Task.Delay(5);
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (_shared is not null)
        {
            await _shared.DisposeAsync();
        }
    }

    /// <summary>Two "processes" share one in-memory store; disposing a view must not close it.</summary>
    private sealed class SharedView(MemoryKeyValueStore inner) : IKeyValueStore
    {
        public string Name => inner.Name;

        public ValueTask<KeyValueEntry?> GetAsync(string key, CancellationToken cancellationToken = default) => inner.GetAsync(key, cancellationToken);

        public ValueTask<IReadOnlyList<KeyValueEntry>> ListAsync(string prefix, CancellationToken cancellationToken = default) => inner.ListAsync(prefix, cancellationToken);

        public ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, long leaseId = 0, CancellationToken cancellationToken = default) => inner.PutAsync(key, value, leaseId, cancellationToken);

        public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken = default) => inner.DeleteAsync(key, cancellationToken);

        public ValueTask<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken = default) => inner.GrantLeaseAsync(ttl, cancellationToken);

        public ValueTask<bool> KeepAliveAsync(long leaseId, CancellationToken cancellationToken = default) => inner.KeepAliveAsync(leaseId, cancellationToken);

        public ValueTask RevokeLeaseAsync(long leaseId, CancellationToken cancellationToken = default) => inner.RevokeLeaseAsync(leaseId, cancellationToken);

        public IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, CancellationToken cancellationToken = default) => inner.WatchAsync(prefix, cancellationToken);

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
