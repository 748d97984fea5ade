using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Membership;
using RequestMigration.Serving;

namespace Examples.ConnectionSwap;

/// <summary>
/// A director's worker pool, kept from the workers' MGMT registrations. Each ready worker's record is written
/// into the director's own discovery store bound to a lease that the worker's heartbeats keep alive, so the
/// director's router (filter <c>role=worker</c>) sees exactly the pool: a worker that misses two heartbeats
/// loses its lease and leaves; one that is recovering is taken out until it says it is ready again.
/// </summary>
internal sealed class WorkerPool(IKeyValueStore store, string director, ILogger logger)
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<ulong, Entry> _workers = [];

    /// <summary>Handles one registration or heartbeat.</summary>
    /// <exception cref="EndpointErrorException">The registration is malformed.</exception>
    public async Task<RegistrationReply> RegisterAsync(WorkerRegistration r, CancellationToken cancellationToken)
    {
        var record = Validate(r);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!_workers.TryGetValue(r.InstanceId, out var entry))
            {
                if (r.State == WorkerState.Leaving)
                {
                    return new RegistrationReply(director, PoolSize);
                }

                entry = new Entry(r.Label, r.State);
                _workers[r.InstanceId] = entry;
                Log.WorkerRegistered(logger, r.Label, r.Address, r.InstanceId, r.HeartbeatSeconds);
            }

            entry.LastSeen = DateTimeOffset.UtcNow;
            if (r.State == WorkerState.Leaving)
            {
                entry.LeaveReason = "shutting down";
                _workers.Remove(r.InstanceId);
                if (entry.LeaseId != 0)
                {
                    await store.RevokeLeaseAsync(entry.LeaseId, cancellationToken).ConfigureAwait(false);
                }

                return new RegistrationReply(director, PoolSize);
            }

            if (entry.LeaseId == 0 || !await store.KeepAliveAsync(entry.LeaseId, cancellationToken).ConfigureAwait(false))
            {
                // Two missed heartbeats, plus a second of slack for a busy machine.
                entry.LeaseId = await store.GrantLeaseAsync(TimeSpan.FromSeconds((2 * r.HeartbeatSeconds) + 1), cancellationToken).ConfigureAwait(false);
                entry.InPool = false;
            }

            var previous = entry.State;
            entry.State = r.State;
            entry.RecoveryEnds = r.State == WorkerState.Recovering ? DateTimeOffset.UtcNow.AddSeconds(r.RecoverySeconds) : null;
            if (r.State == WorkerState.Ready && (!entry.InPool || entry.Record != record.Address))
            {
                entry.InPool = true;
                entry.Record = record.Address;
                await store.PutInstanceAsync(record, entry.LeaseId, cancellationToken).ConfigureAwait(false);
            }
            else if (r.State == WorkerState.Recovering && entry.InPool)
            {
                // Out of the pool while it recovers: no new streams go there. (Set before the delete, so the
                // membership event is not mistaken for missed heartbeats.)
                entry.InPool = false;
                entry.LeaveReason = $"recovering for {r.RecoverySeconds:0.#} s";
                await store.DeleteInstanceAsync(Endpoints.WorkerGenerate, r.InstanceId, cancellationToken).ConfigureAwait(false);
            }

            if (previous != r.State)
            {
                Log.WorkerStateChanged(logger, r.Label, previous, r.State);
            }

            return new RegistrationReply(director, PoolSize);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Logs the router's membership events in the pool's words, until cancelled.</summary>
    public async Task WatchAsync(IAsyncEnumerable<MembershipEvent> events, Func<int> available)
    {
        try
        {
            await foreach (var e in events.ConfigureAwait(false))
            {
                var label = Tags.LabelOf(e.Instance);
                switch (e.Kind)
                {
                    case MembershipEventKind.Joined:
                        Log.PoolJoined(logger, label, e.Instance.Address, available());
                        break;
                    case MembershipEventKind.Left:
                        Log.PoolLeft(logger, label, await LeaveReasonAsync(e.Instance.InstanceId).ConfigureAwait(false), available());
                        break;
                    case MembershipEventKind.Failed:
                        Log.PoolFailed(logger, label, e.Reason ?? "reported down");
                        break;
                    case MembershipEventKind.Recovered:
                        Log.PoolRecovered(logger, label, available());
                        break;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>A line per worker for health checks and "no worker available" errors.</summary>
    public async Task<IReadOnlyList<string>> DescribeAsync(IReadOnlySet<ulong> available)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            var now = DateTimeOffset.UtcNow;
            return [.. _workers.OrderBy(w => w.Value.Label, StringComparer.Ordinal).Select(w => w.Value switch
            {
                { State: WorkerState.Recovering, RecoveryEnds: { } end } => $"{w.Value.Label} recovering ({Math.Max(0, (end - now).TotalSeconds):0.0} s left)",
                { InPool: false } => $"{w.Value.Label} gone (no heartbeat for {(now - w.Value.LastSeen).TotalSeconds:0.0} s)",
                _ when !available.Contains(w.Key) => $"{w.Value.Label} failed (kept out for a few seconds)",
                _ => $"{w.Value.Label} ready",
            })];
        }
        finally
        {
            _gate.Release();
        }
    }

    private int PoolSize => _workers.Values.Count(w => w.InPool);

    private async Task<string> LeaveReasonAsync(ulong id)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!_workers.TryGetValue(id, out var entry))
            {
                return "shutting down";
            }

            if (entry.InPool && await store.GetAsync(InstanceKeys.Key(Endpoints.WorkerGenerate, id)).ConfigureAwait(false) is null)
            {
                // The director did not take it out, so its lease expired: it stopped heartbeating (killed, hung
                // or cut off). Its next heartbeat, if any, brings it back.
                entry.InPool = false;
                entry.LeaseId = 0;
                return $"missed heartbeats (none for {(DateTimeOffset.UtcNow - entry.LastSeen).TotalSeconds:0.0} s)";
            }

            return entry.InPool ? "re-registered at once" : entry.LeaveReason ?? "deregistered";
        }
        finally
        {
            _gate.Release();
        }
    }

    private static InstanceRecord Validate(WorkerRegistration r)
    {
        if (r.InstanceId == 0 || !IsAddress(r.Address) || (r.Alternates ?? []).Any(a => !IsAddress(a.Address)) || string.IsNullOrWhiteSpace(r.Transport)
            || !double.IsFinite(r.HeartbeatSeconds) || r.HeartbeatSeconds is < 0.1 or > 3600 || !Enum.IsDefined(r.State))
        {
            throw new EndpointErrorException("bad registration: instance id, host:port address, transport, state and a heartbeat of 0.1-3600 s are required");
        }

        try
        {
            return new InstanceRecord
            {
                InstanceId = r.InstanceId,
                Namespace = Endpoints.WorkerGenerate.Namespace,
                Component = Endpoints.WorkerGenerate.Component,
                Endpoint = Endpoints.WorkerGenerate.Endpoint,
                Transport = r.Transport,
                Address = r.Address,
                Alternates = r.Alternates ?? [],
                Tags = Validated(Tags.For("worker", r.Label ?? string.Empty)),
            };
        }
        catch (ArgumentException ex)
        {
            throw new EndpointErrorException($"bad registration: {ex.Message}");
        }

        static IReadOnlyDictionary<string, string> Validated(IReadOnlyDictionary<string, string> tags)
        {
            InstanceTags.Validate(tags, "worker label");
            return string.IsNullOrWhiteSpace(tags[Tags.Label]) ? throw new ArgumentException("the label is empty") : tags;
        }
    }

    private static bool IsAddress(string? address) =>
        address is { Length: > 2 and <= 300 } && address.LastIndexOf(':') is var colon and > 0
        && int.TryParse(address.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
        && port is > 0 and <= 65535 && !address.Any(char.IsControl);

    private sealed class Entry(string label, WorkerState state)
    {
        public string Label { get; } = label;

        public WorkerState State { get; set; } = state;

        public long LeaseId { get; set; }

        public bool InPool { get; set; }

        public string? Record { get; set; }

        public string? LeaveReason { get; set; }

        public DateTimeOffset LastSeen { get; set; }

        public DateTimeOffset? RecoveryEnds { get; set; }
    }
}
