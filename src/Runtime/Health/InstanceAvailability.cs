using Microsoft.Extensions.Logging;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;

namespace RequestMigration.Health;

/// <summary>
/// The two-tier instance view of one endpoint: <see cref="Source"/> is what discovery says exists;
/// <see cref="Available"/> is the routable subset. <see cref="ReportInstanceDown"/> removes an instance
/// from <see cref="Available"/>; reconciling (<c>Available = Source</c>) happens on every discovery change
/// and, without one, after at most one <see cref="InhibitDuration"/>.
/// </summary>
/// <remarks>
/// Readers never lock: both lists are immutable arrays swapped under <c>_gate</c>, so a router picking an
/// instance reads one consistent snapshot. Time comes from the injected <see cref="TimeProvider"/>.
/// </remarks>
public sealed partial class InstanceAvailability : IDisposable
{
    private readonly Lock _gate = new();
    private readonly ILogger _logger;
    private readonly ITimer? _reconcileTimer;
    private readonly Dictionary<ulong, InstanceRecord> _source = [];
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private InstanceRecord[] _sourceSnapshot = [];
    private InstanceRecord[] _available = [];

    /// <summary>Creates an empty view.</summary>
    /// <param name="endpoint">The endpoint (for logs and errors).</param>
    /// <param name="inhibitDuration">Reconcile interval; <see cref="TimeSpan.Zero"/> disables inhibiting.</param>
    /// <param name="timeProvider">Clock for the reconcile timer.</param>
    /// <param name="logger">Logger.</param>
    public InstanceAvailability(EndpointId endpoint, TimeSpan inhibitDuration, TimeProvider timeProvider, ILogger logger)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inhibitDuration, TimeSpan.Zero);
        Endpoint = endpoint;
        InhibitDuration = inhibitDuration;
        _logger = logger;
        if (inhibitDuration > TimeSpan.Zero)
        {
            _reconcileTimer = timeProvider.CreateTimer(static s => ((InstanceAvailability)s!).PeriodicReconcile(), this, inhibitDuration, inhibitDuration);
        }
    }

    /// <summary>The endpoint.</summary>
    public EndpointId Endpoint { get; }

    /// <summary>How long an instance reported down stays out, at most.</summary>
    public TimeSpan InhibitDuration { get; }

    /// <summary><c>instance_source</c>: every instance discovery reports, ordered by id.</summary>
    public IReadOnlyList<InstanceRecord> Source => Volatile.Read(ref _sourceSnapshot);

    /// <summary><c>instance_avail</c>: the instances a request may be routed to, ordered by id.</summary>
    public IReadOnlyList<InstanceRecord> Available => Volatile.Read(ref _available);

    internal InstanceRecord[] AvailableArray => Volatile.Read(ref _available);

    /// <summary>Completes when discovery has delivered its initial snapshot.</summary>
    public Task Synced => _synced.Task;

    /// <summary>Applies a discovery change and reconciles.</summary>
    public void Apply(InstanceChange change)
    {
        lock (_gate)
        {
            switch (change.Kind)
            {
                case InstanceChangeKind.Upserted:
                    _source[change.InstanceId] = change.Record!;
                    break;
                case InstanceChangeKind.Removed:
                    _source.Remove(change.InstanceId);
                    break;
                case InstanceChangeKind.Synced:
                    _synced.TrySetResult();
                    break;
            }

            _sourceSnapshot = [.. _source.Values.OrderBy(r => r.InstanceId)];
            ReconcileLocked();

            // A discovery change restarts the interval: the next periodic reconcile is one interval away.
            _reconcileTimer?.Change(InhibitDuration, InhibitDuration);
        }
    }

    /// <summary>
    /// Removes an instance from <see cref="Available"/> until the next reconcile. Returns false when
    /// inhibiting is disabled or the instance was not available.
    /// </summary>
    public bool ReportInstanceDown(ulong instanceId)
    {
        if (InhibitDuration == TimeSpan.Zero)
        {
            return false;
        }

        lock (_gate)
        {
            var current = _available;
            var index = Array.FindIndex(current, r => r.InstanceId == instanceId);
            if (index < 0)
            {
                return false;
            }

            var next = new InstanceRecord[current.Length - 1];
            Array.Copy(current, 0, next, 0, index);
            Array.Copy(current, index + 1, next, index, current.Length - index - 1);
            Volatile.Write(ref _available, next);
            RuntimeMetrics.InstancesInhibited.Add(1, new KeyValuePair<string, object?>("endpoint", Endpoint.Path));
            Log.Inhibiting(_logger, instanceId, Endpoint.Path);
            return true;
        }
    }

    /// <summary>Finds an instance in <see cref="Source"/> (direct routing ignores inhibiting).</summary>
    public InstanceRecord? FindInSource(ulong instanceId)
    {
        var source = Volatile.Read(ref _sourceSnapshot);
        foreach (var r in source)
        {
            if (r.InstanceId == instanceId)
            {
                return r;
            }
        }

        return null;
    }

    /// <summary>Waits until at least one instance is available.</summary>
    /// <exception cref="TimeoutException">None appeared within <paramref name="timeout"/>; the message names the endpoint.</exception>
    public async Task WaitForAvailableAsync(TimeSpan timeout, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        var deadline = timeProvider.GetUtcNow() + timeout;
        while (AvailableArray.Length == 0)
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

    private TimeoutException NoneWithin(TimeSpan timeout) =>
        new($"{Routing.NoInstancesException.MessageFor(Endpoint.Path)} within {timeout.TotalSeconds:0.###} s");

    /// <summary>Restores every instance discovery still reports.</summary>
    public void Reconcile()
    {
        lock (_gate)
        {
            ReconcileLocked();
        }
    }

    /// <inheritdoc />
    public void Dispose() => _reconcileTimer?.Dispose();

    private void PeriodicReconcile()
    {
        lock (_gate)
        {
            if (_available.Length != _sourceSnapshot.Length)
            {
                LogPeriodic(Endpoint.Path, _sourceSnapshot.Length - _available.Length);
            }

            ReconcileLocked();
        }
    }

    private void ReconcileLocked()
    {
        Volatile.Write(ref _available, _sourceSnapshot);
        var changed = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        changed.TrySetResult();
    }


    [LoggerMessage(Level = LogLevel.Debug, Message = "periodic reconciliation for endpoint={Endpoint}: restoring {Count} inhibited instance(s)")]
    private partial void LogPeriodic(string endpoint, int count);
}
