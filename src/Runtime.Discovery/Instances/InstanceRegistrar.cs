using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace RequestMigration.Discovery.Instances;

/// <summary>
/// Owns one process's primary lease and the instance records bound to it: keeps the lease alive at
/// about TTL/3, and when the lease is lost (for example after a store outage longer than the TTL)
/// grants a new one and writes every record again, without the caller noticing. The instance id
/// stays the same for the life of the registrar.
/// </summary>
internal sealed partial class InstanceRegistrar : IAsyncDisposable
{
    private static readonly TimeSpan StartupRetryInitialDelay = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan StartupRetryMaxDelay = TimeSpan.FromSeconds(4);

    private readonly InstanceRegistry _registry;
    private readonly IKeyValueStore _store;
    private readonly TimeSpan _ttl;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, InstanceRecord> _records = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private Task _keepAlive = Task.CompletedTask;
    private long _leaseId;
    private bool _disposed;
    private bool _deregistered;

    private InstanceRegistrar(InstanceRegistry registry, TimeSpan ttl, TimeProvider time, ILogger logger)
    {
        _registry = registry;
        _store = registry.Store;
        _ttl = ttl;
        _time = time;
        _logger = logger;
    }

    /// <summary>The id this process's instances are registered under.</summary>
    public ulong InstanceId { get; private set; }

    /// <summary>The current lease (changes when a lost lease is replaced).</summary>
    public long LeaseId => Interlocked.Read(ref _leaseId);

    /// <summary>
    /// Grants the primary lease and starts keeping it alive, waiting up to
    /// <see cref="DiscoveryOptions.DefaultStartupTimeout"/> for an unavailable store. On etcd the instance id is
    /// the lease id; on other stores it is a random 64-bit number.
    /// </summary>
    /// <inheritdoc cref="StartAsync(InstanceRegistry, TimeSpan, TimeSpan, TimeProvider?, ILogger{InstanceRegistrar}?, CancellationToken)" path="/param"/>
    /// <exception cref="StoreUnavailableException">The store was still unavailable when the start-up timeout passed.</exception>
    public static Task<InstanceRegistrar> StartAsync(
        InstanceRegistry registry,
        TimeSpan leaseTtl,
        TimeProvider? timeProvider = null,
        ILogger<InstanceRegistrar>? logger = null,
        CancellationToken cancellationToken = default) =>
        StartAsync(registry, leaseTtl, DiscoveryOptions.DefaultStartupTimeout, timeProvider, logger, cancellationToken);

    /// <summary>
    /// Grants the primary lease and starts keeping it alive. On etcd the instance id is the lease id;
    /// on other stores it is a random 64-bit number.
    /// </summary>
    /// <remarks>
    /// While the store is unavailable (etcd down, unreachable or without quorum) the grant is retried with
    /// backoff, 0.25 s doubling to 4 s, for up to <paramref name="startupTimeout"/>; one warning is logged when
    /// the wait begins and one line when it ends.
    /// </remarks>
    /// <param name="registry">Where the records go.</param>
    /// <param name="leaseTtl">TTL of the primary lease (at least 1 s).</param>
    /// <param name="startupTimeout">How long to keep trying an unavailable store (<see cref="DiscoveryOptions.StartupTimeout"/>); zero makes one attempt.</param>
    /// <param name="timeProvider">Clock for the keep-alive cadence and the start-up backoff (default: the system clock).</param>
    /// <param name="logger">Receives keep-alive, lease and start-up messages.</param>
    /// <param name="cancellationToken">Abandons the start.</param>
    /// <exception cref="StoreUnavailableException">The store was still unavailable when <paramref name="startupTimeout"/> passed; the message names it and the timeout.</exception>
    public static async Task<InstanceRegistrar> StartAsync(
        InstanceRegistry registry,
        TimeSpan leaseTtl,
        TimeSpan startupTimeout,
        TimeProvider? timeProvider = null,
        ILogger<InstanceRegistrar>? logger = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentOutOfRangeException.ThrowIfLessThan(leaseTtl, TimeSpan.FromSeconds(1));
        ArgumentOutOfRangeException.ThrowIfLessThan(startupTimeout, TimeSpan.Zero);
        var r = new InstanceRegistrar(registry, leaseTtl, timeProvider ?? TimeProvider.System, (ILogger?)logger ?? NullLogger.Instance);
        r._leaseId = await r.GrantFirstLeaseAsync(startupTimeout, cancellationToken).ConfigureAwait(false);
        r.InstanceId = r._store.LeaseIdsAreShared ? (ulong)r._leaseId : NonZeroRandom();
        r._keepAlive = r.KeepAliveLoopAsync(r._stop.Token);
        return r;
    }

    /// <summary>
    /// Writes a record (its <see cref="InstanceRecord.InstanceId"/> must be <see cref="InstanceId"/>) bound to the lease,
    /// stamped with <see cref="InstanceRecord.RegisteredAt"/>: now for a new key, the first registration's time for a key
    /// registered before.
    /// </summary>
    public async Task RegisterAsync(InstanceRecord record, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (record.InstanceId != InstanceId)
        {
            throw new ArgumentException($"record instance id {record.InstanceId:x} is not this registrar's {InstanceId:x}", nameof(record));
        }

        InstanceTags.Validate(record.Tags, $"tags of instance {record.InstanceId:x}");

        var key = InstanceKeys.Key(record.EndpointId, record.InstanceId);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);

            // A re-registration (new tags) is the same instance: its age must not restart.
            var registeredAt = _records.TryGetValue(key, out var previous) && previous.RegisteredAt is { } first
                ? first
                : record.RegisteredAt ?? _time.GetUtcNow();
            record = record with { RegisteredAt = registeredAt };
            _records[key] = record;
        }

        await _registry.PutAsync(record, LeaseId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes every record this registrar wrote (first step of a graceful shutdown).</summary>
    public async Task DeregisterAllAsync(CancellationToken cancellationToken = default)
    {
        List<InstanceRecord> records;
        lock (_gate)
        {
            records = [.. _records.Values];
            _records.Clear();
            _deregistered = true;
        }

        foreach (var r in records)
        {
            try
            {
                await _registry.DeleteAsync(r.EndpointId, r.InstanceId, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // The lease revoke (or its expiry) removes the key anyway.
                LogDeregisterFailed(r.EndpointId.Path, ex.Message);
            }
        }
    }

    /// <summary>Stops the keep-alive and revokes the lease, which removes every record bound to it.</summary>
    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _keepAlive.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await _store.RevokeLeaseAsync(LeaseId, cts.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not ObjectDisposedException)
        {
            LogRevokeFailed(LeaseId, ex.Message);
        }

        _stop.Dispose();
    }

    /// <summary>Grants the first lease, retrying an unavailable store with backoff until <paramref name="timeout"/> has passed.</summary>
    private async Task<long> GrantFirstLeaseAsync(TimeSpan timeout, CancellationToken ct)
    {
        var started = _time.GetTimestamp();
        var delay = StartupRetryInitialDelay;
        var waiting = false;
        while (true)
        {
            try
            {
                var lease = await _store.GrantLeaseAsync(_ttl, ct).ConfigureAwait(false);
                if (waiting)
                {
                    LogStoreAvailable(_store.Name, _time.GetElapsedTime(started).TotalSeconds);
                }

                return lease;
            }
            catch (StoreUnavailableException ex)
            {
                var left = timeout - _time.GetElapsedTime(started);
                if (left <= TimeSpan.Zero)
                {
                    throw new StoreUnavailableException(
                        $"{ex.Message}; gave up registering after the start-up timeout of {timeout.TotalSeconds:0.###} s ({DiscoveryOptions.StartupTimeoutEnvironmentVariable})",
                        ex);
                }

                if (!waiting)
                {
                    // Once, not once per retry.
                    waiting = true;
                    LogWaitingForStore(ex.Message, timeout.TotalSeconds);
                }

                await Task.Delay(delay < left ? delay : left, _time, ct).ConfigureAwait(false);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, StartupRetryMaxDelay.Ticks));
            }
        }
    }

    private async Task KeepAliveLoopAsync(CancellationToken ct)
    {
        var period = TimeSpan.FromTicks(Math.Max(_ttl.Ticks / 3, TimeSpan.FromMilliseconds(300).Ticks));
        var retry = TimeSpan.FromTicks(Math.Min(period.Ticks, TimeSpan.TicksPerSecond));
        var failing = false;
        while (!ct.IsCancellationRequested)
        {
            await Task.Delay(failing ? retry : period, _time, ct).ConfigureAwait(false);
            try
            {
                using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
                deadline.CancelAfter(TimeSpan.FromTicks(Math.Max(period.Ticks, TimeSpan.TicksPerSecond)));
                if (!await _store.KeepAliveAsync(LeaseId, deadline.Token).ConfigureAwait(false))
                {
                    await ReplaceLeaseAsync(deadline.Token).ConfigureAwait(false);
                }

                if (failing)
                {
                    LogRecovered(_store.Name);
                    failing = false;
                }
            }
            catch (Exception ex) when (!ct.IsCancellationRequested && ex is not ObjectDisposedException)
            {
                if (!failing)
                {
                    // Once per outage, not once per retry.
                    LogKeepAliveFailed(_store.Name, LeaseId, ex.Message);
                    failing = true;
                }
            }
        }
    }

    private async Task ReplaceLeaseAsync(CancellationToken ct)
    {
        var old = LeaseId;
        var lease = await _store.GrantLeaseAsync(_ttl, ct).ConfigureAwait(false);
        Interlocked.Exchange(ref _leaseId, lease);
        List<InstanceRecord> records;
        lock (_gate)
        {
            records = [.. _records.Values];
        }

        foreach (var r in records)
        {
            await _registry.PutAsync(r, lease, ct).ConfigureAwait(false);
        }

        if (Volatile.Read(ref _deregistered))
        {
            // A shutdown deregistered while we were writing: don't let this re-registration undo it.
            foreach (var r in records)
            {
                await _registry.DeleteAsync(r.EndpointId, r.InstanceId, ct).ConfigureAwait(false);
            }
        }

        LogLeaseReplaced(old, lease, records.Count);
    }

    private static ulong NonZeroRandom()
    {
        ulong id;
        do
        {
            id = (ulong)Random.Shared.NextInt64(long.MinValue, long.MaxValue);
        }
        while (id == 0);
        return id;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "discovery: keep-alive of lease {LeaseId:x} on {Store} failed ({Reason}); instances stay registered locally and are re-registered when the store is back")]
    private partial void LogKeepAliveFailed(string store, long leaseId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "discovery: cannot register yet: {Reason}; retrying for up to {Seconds} s (DYN_STORE_STARTUP_TIMEOUT_SECS)")]
    private partial void LogWaitingForStore(string reason, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "discovery: {Store} available after {Seconds:0.0} s; registering")]
    private partial void LogStoreAvailable(string store, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "discovery: {Store} reachable again")]
    private partial void LogRecovered(string store);

    [LoggerMessage(Level = LogLevel.Warning, Message = "discovery: lease {OldLeaseId:x} was lost; granted lease {LeaseId:x} and re-registered {Count} instance record(s)")]
    private partial void LogLeaseReplaced(long oldLeaseId, long leaseId, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "discovery: could not deregister {Endpoint} ({Reason})")]
    private partial void LogDeregisterFailed(string endpoint, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "discovery: could not revoke lease {LeaseId:x} ({Reason}); it expires by itself")]
    private partial void LogRevokeFailed(long leaseId, string reason);
}
