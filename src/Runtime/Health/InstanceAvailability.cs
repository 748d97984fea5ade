using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;
using RequestMigration.Membership;

namespace RequestMigration.Health;

/// <summary>
/// The two-tier instance view of one endpoint: <see cref="Source"/> is what discovery says exists (and the
/// router's tag filter lets through); <see cref="Available"/> is the routable subset.
/// A failed attempt (or <see cref="Routing.PushRouter{TRequest, TResponse}.ReportInstanceDown(ulong, string)"/>) takes one instance
/// out of <see cref="Available"/> for <see cref="InhibitDuration"/> from that moment; each instance returns on its
/// own deadline. Discovery
/// changes update <see cref="Source"/> at once (new instances become available, removed ones leave) but never
/// bring an inhibited instance back early. Every change is also published as a <see cref="MembershipEvent"/>
/// (<see cref="WatchEventsAsync"/>). Each router owns its view (<see cref="Routing.PushRouter{TRequest, TResponse}.Instances"/>);
/// callers read it, only the router changes it.
/// </summary>
/// <remarks>
/// Readers never lock: the lists are immutable arrays swapped under <c>_gate</c>, so a router picking an
/// instance reads one consistent snapshot. Time comes from the injected <see cref="TimeProvider"/>; one
/// timer is armed for the earliest inhibit deadline.
/// </remarks>
public sealed partial class InstanceAvailability
{
    private readonly Lock _gate = new();
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ITimer? _timer;
    private readonly KeyValuePair<string, object?> _endpointTag;
    private readonly IReadOnlyDictionary<string, string> _filter;
    private readonly ConsecutiveFailuresPolicy _health;
    private readonly MembershipEventHub _events;
    private readonly MetricInstruments _metrics;

    // Invariants (under _gate): _states holds exactly the instances of _sourceStates; _availableStates is the
    // subset of _sourceStates whose InhibitedUntil has passed, in the same (id) order; the record arrays
    // mirror the state arrays. _timerDue is the deadline the timer is armed for (MaxValue: disarmed).
    private readonly Dictionary<ulong, InstanceState> _states = [];
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private InstanceState[] _sourceStates = [];
    private InstanceState[] _availableStates = [];
    private InstanceRecord[] _sourceSnapshot = [];
    private InstanceRecord[] _available = [];
    private DateTimeOffset _timerDue = DateTimeOffset.MaxValue;

    // Ids seen since the current watch (re)started; on its Synced, instances not seen left while it was down.
    private HashSet<ulong>? _resync;
    private bool _disposed;

    /// <summary>Creates an empty view.</summary>
    /// <param name="endpoint">The endpoint (for logs and errors).</param>
    /// <param name="inhibitDuration">How long a reported instance stays out; <see cref="TimeSpan.Zero"/> disables inhibiting.</param>
    /// <param name="timeProvider">Clock for the inhibit deadlines.</param>
    /// <param name="logger">Logger.</param>
    /// <param name="filter">Tags an instance must have to be in the view; null or empty for all.</param>
    /// <param name="failuresBeforeInhibit">Failed attempts in a row before an instance is inhibited (passive health).</param>
    /// <param name="metrics">Where inhibits and dropped events are counted: the router's runtime's instruments; the process-wide ones by default.</param>
    internal InstanceAvailability(EndpointId endpoint, TimeSpan inhibitDuration, TimeProvider timeProvider, ILogger logger, IReadOnlyDictionary<string, string>? filter = null, int failuresBeforeInhibit = 1, MetricInstruments? metrics = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inhibitDuration, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(failuresBeforeInhibit, 1);
        Endpoint = endpoint;
        InhibitDuration = inhibitDuration;
        _time = timeProvider;
        _logger = logger;
        _endpointTag = MetricInstruments.EndpointTag(endpoint.Path);
        _metrics = metrics ?? MetricInstruments.Shared;
        _filter = filter ?? InstanceTags.None;
        _health = new ConsecutiveFailuresPolicy(failuresBeforeInhibit);
        _events = new MembershipEventHub(endpoint.Path, logger, _metrics);
        if (inhibitDuration > TimeSpan.Zero)
        {
            _timer = timeProvider.CreateTimer(static s => ((InstanceAvailability)s!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The endpoint.</summary>
    public EndpointId Endpoint { get; }

    /// <summary>How long an instance reported down stays out of rotation.</summary>
    public TimeSpan InhibitDuration { get; }

    /// <summary><c>instance_source</c>: every instance discovery reports, ordered by id.</summary>
    public IReadOnlyList<InstanceRecord> Source => Volatile.Read(ref _sourceSnapshot);

    /// <summary><c>instance_avail</c>: the instances a request may be routed to, ordered by id.</summary>
    public IReadOnlyList<InstanceRecord> Available => Volatile.Read(ref _available);

    /// <summary>Completes when discovery has delivered its initial snapshot.</summary>
    public Task Synced => _synced.Task;

    /// <summary>Tags an instance needs to be in this view (empty: none needed).</summary>
    public IReadOnlyDictionary<string, string> Filter => _filter;

    internal InstanceState[] AvailableStates => Volatile.Read(ref _availableStates);

    /// <summary>Completes at the next change of <see cref="Available"/> (or of the source).</summary>
    internal Task Changed
    {
        get
        {
            lock (_gate)
            {
                return _changed.Task;
            }
        }
    }

    /// <summary>
    /// Membership events from now on (<see cref="MembershipEventKind.Joined"/>, <c>Left</c>, <c>Failed</c>,
    /// <c>Recovered</c>), in the order they happened, until <paramref name="cancellationToken"/> is cancelled or
    /// the router is disposed. The subscription starts when this method is called, not at the first
    /// <c>MoveNextAsync</c>. A subscriber that falls more than 1024 events behind loses the oldest ones (counted
    /// and logged); routing never waits for a subscriber. For the state at subscription time read
    /// <see cref="Source"/> and <see cref="Available"/>.
    /// </summary>
    public IAsyncEnumerable<MembershipEvent> WatchEventsAsync(CancellationToken cancellationToken = default) => _events.Subscribe(cancellationToken);

    internal int SourceCount => Volatile.Read(ref _sourceStates).Length;

    /// <summary>A discovery watch is (re)starting: what it reports up to its Synced becomes the whole source.</summary>
    internal void BeginResync()
    {
        lock (_gate)
        {
            _resync = [];
        }
    }

    /// <summary>Applies a discovery change.</summary>
    internal void Apply(InstanceChange change)
    {
        lock (_gate)
        {
            var now = _time.GetUtcNow();
            switch (change.Kind)
            {
                case InstanceChangeKind.Upserted:
                    _resync?.Add(change.InstanceId);
                    Upsert(change.Record!, now);
                    break;
                case InstanceChangeKind.Removed:
                    RemoveLocked(change.InstanceId, "removed from discovery (deregistered or lease expired)", now);
                    break;
                case InstanceChangeKind.Synced:
                    if (_resync is { } seen)
                    {
                        _resync = null;
                        foreach (var id in _states.Keys.Where(id => !seen.Contains(id)).ToList())
                        {
                            RemoveLocked(id, "gone from discovery while the watch was reconnecting", now);
                        }
                    }

                    _synced.TrySetResult();
                    break;
            }

            _sourceStates = [.. _states.Values.OrderBy(s => s.InstanceId)];
            RebuildLocked(now);
        }
    }

    /// <summary>
    /// Takes an instance out of <see cref="Available"/> for <see cref="InhibitDuration"/> from now (logging
    /// <c>inhibiting instance {id}</c>, publishing <see cref="MembershipEventKind.Failed"/>). Returns false when
    /// inhibiting is disabled or the instance is not available.
    /// </summary>
    internal bool ReportInstanceDown(ulong instanceId) => ReportInstanceDown(instanceId, "reported down");

    internal bool ReportInstanceDown(ulong instanceId, string reason)
    {
        lock (_gate)
        {
            return InhibitLocked(instanceId, reason);
        }
    }

    /// <summary>
    /// An attempt on the instance failed (passive health): it is inhibited once
    /// <see cref="Routing.RouterOptions.FailuresBeforeInhibit"/> failures in a row are reached. True when it was inhibited now.
    /// </summary>
    internal bool ReportFailure(ulong instanceId, string reason)
    {
        lock (_gate)
        {
            return _states.TryGetValue(instanceId, out var state) && _health.OnFailure(state) && InhibitLocked(instanceId, reason);
        }
    }

    /// <summary>An attempt on the instance completed: its failure count starts again.</summary>
    internal void ReportSuccess(InstanceState state)
    {
        if (state.ConsecutiveFailures == 0)
        {
            return;
        }

        lock (_gate)
        {
            ConsecutiveFailuresPolicy.OnSuccess(state);
        }
    }

    private bool InhibitLocked(ulong instanceId, string reason)
    {
        Debug.Assert(_gate.IsHeldByCurrentThread);
        if (InhibitDuration == TimeSpan.Zero || !_states.TryGetValue(instanceId, out var state) || !Array.Exists(_availableStates, s => ReferenceEquals(s, state)))
        {
            return false;
        }

        var now = _time.GetUtcNow();
        state.InhibitedUntil = now + InhibitDuration;
        RebuildLocked(now);
        _events.Publish(new MembershipEvent(MembershipEventKind.Failed, state.Record, now, reason));
        _metrics.InstanceInhibited(_endpointTag);
        Log.Inhibiting(_logger, instanceId, Endpoint.Path);
        return true;
    }

    /// <summary>Finds an instance in <see cref="Source"/> (direct routing ignores inhibiting).</summary>
    public InstanceRecord? FindInSource(ulong instanceId) => FindState(instanceId)?.Record;

    internal InstanceState? FindState(ulong instanceId)
    {
        foreach (var s in Volatile.Read(ref _sourceStates))
        {
            if (s.InstanceId == instanceId)
            {
                return s;
            }
        }

        return null;
    }

    /// <summary>Waits until at least one instance is available.</summary>
    /// <exception cref="TimeoutException">None appeared within <paramref name="timeout"/>; the message names the endpoint.</exception>
    internal async Task WaitForAvailableAsync(TimeSpan timeout, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        var deadline = timeProvider.GetUtcNow() + timeout;
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                if (_available.Length > 0)
                {
                    return;
                }

                changed = _changed.Task;
            }

            var left = deadline - timeProvider.GetUtcNow();
            if (left <= TimeSpan.Zero)
            {
                throw NoneWithin(timeout);
            }

            try
            {
                await changed.WaitAsync(left, timeProvider, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                throw NoneWithin(timeout);
            }
        }
    }

    /// <summary>Brings every inhibited instance back at once.</summary>
    internal void Reconcile()
    {
        lock (_gate)
        {
            foreach (var s in _sourceStates)
            {
                s.InhibitedUntil = DateTimeOffset.MinValue;
            }

            RebuildLocked(_time.GetUtcNow());
        }
    }

    /// <summary>Stops the inhibit timer and ends every event subscription; the owning router calls it when it is disposed.</summary>
    internal void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
        }

        _timer?.Dispose();
        _events.Complete();
    }

    private TimeoutException NoneWithin(TimeSpan timeout) =>
        new($"{Routing.NoInstancesException.MessageFor(Endpoint.Path)} within {timeout.TotalSeconds:0.###} s");

    private void Upsert(InstanceRecord record, DateTimeOffset now)
    {
        var matches = InstanceTags.Matches(record.Tags, _filter);
        if (_states.TryGetValue(record.InstanceId, out var existing))
        {
            if (!matches)
            {
                RemoveLocked(record.InstanceId, $"its tags ({InstanceTags.Format(record.Tags)}) no longer match the filter", now);
                return;
            }

            var old = existing.Record;
            existing.Update(record);
            if (old.Address != record.Address || old.Transport != record.Transport)
            {
                // Same id at a new address: a new incarnation, so an earlier failure says nothing about it.
                existing.InhibitedUntil = DateTimeOffset.MinValue;
                existing.ConsecutiveFailures = 0;
            }

            return;
        }

        if (matches)
        {
            _states[record.InstanceId] = new InstanceState(record);
            _events.Publish(new MembershipEvent(MembershipEventKind.Joined, record, now));
        }
    }

    private void RemoveLocked(ulong instanceId, string reason, DateTimeOffset now)
    {
        if (_states.Remove(instanceId, out var state))
        {
            _events.Publish(new MembershipEvent(MembershipEventKind.Left, state.Record, now, reason));
        }
    }

    private void OnTimer()
    {
        int restored;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            var before = _availableStates.Length;

            // Re-arm whatever the rebuild finds: a timer that fired a little early must fire again.
            _timerDue = DateTimeOffset.MaxValue;
            RebuildLocked(_time.GetUtcNow());
            restored = _availableStates.Length - before;
        }

        if (restored > 0)
        {
            LogRestored(Endpoint.Path, restored);
        }
    }

    /// <summary>Recomputes <see cref="Available"/> from the source and the deadlines, and re-arms the timer.</summary>
    private void RebuildLocked(DateTimeOffset now)
    {
        Debug.Assert(_gate.IsHeldByCurrentThread);
        var source = _sourceStates;
        var available = new List<InstanceState>(source.Length);
        var next = DateTimeOffset.MaxValue;
        foreach (var s in source)
        {
            if (s.InhibitedUntil <= now)
            {
                available.Add(s);
            }
            else if (s.InhibitedUntil < next)
            {
                next = s.InhibitedUntil;
            }
        }

        var availableStates = available.Count == source.Length ? source : available.ToArray();
        foreach (var s in availableStates)
        {
            if (s.InhibitedUntil != DateTimeOffset.MinValue)
            {
                // Its deadline passed (or a reconcile cleared it): back in rotation.
                s.InhibitedUntil = DateTimeOffset.MinValue;
                _events.Publish(new MembershipEvent(MembershipEventKind.Recovered, s.Record, now));
            }
        }

        Volatile.Write(ref _sourceSnapshot, [.. source.Select(s => s.Record)]);
        Volatile.Write(ref _availableStates, availableStates);
        Volatile.Write(ref _available, [.. availableStates.Select(s => s.Record)]);
        if (!_disposed && next != _timerDue)
        {
            _timerDue = next;
            _timer?.Change(next == DateTimeOffset.MaxValue ? Timeout.InfiniteTimeSpan : next - now, Timeout.InfiniteTimeSpan);
        }

        var changed = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        changed.TrySetResult();
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "endpoint={Endpoint}: {Count} inhibited instance(s) back in rotation")]
    private partial void LogRestored(string endpoint, int count);
}
