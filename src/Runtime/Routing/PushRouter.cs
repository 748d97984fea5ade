using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;
using RequestMigration.Health;
using RequestMigration.LoadBalancing;
using RequestMigration.Transport;
using RequestMigration.Wire;

namespace RequestMigration.Routing;

/// <summary>
/// Sends requests of one endpoint to its instances and streams the responses back. When an attempt fails
/// (the stream breaks, the connection is refused or lost, the server reports the stream incomplete) the
/// router reports that instance down and immediately tries another available one, up to
/// <see cref="RouterOptions.MaxAttempts"/>. Each failed attempt reaches the consumer as an error item
/// (<see cref="Annotated{T}.IsError"/>), so it can tell attempts apart; with
/// <see cref="RouterOptions.Migration"/> the stream continues where it stopped instead, and the consumer sees
/// one stream.
/// </summary>
/// <typeparam name="TRequest">Request type.</typeparam>
/// <typeparam name="TResponse">Response item type.</typeparam>
public sealed partial class PushRouter<TRequest, TResponse> : IAsyncDisposable
{
    private readonly RequestMigrationRuntime _runtime;
    private readonly RouterOptions _options;
    private readonly ILoadBalancingPolicy _policy;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _watch;
    private readonly KeyValuePair<string, object?> _endpointTag;
    private readonly HeartbeatMonitor? _heartbeats;
    private string? _watchError;
    private int _disposed;

    internal PushRouter(RequestMigrationRuntime runtime, EndpointId endpoint, RouterOptions options)
    {
        options.Validate();
        _policy = runtime.LoadBalancingPolicies.Create(options.LoadBalancingPolicy);

        // Local configuration (the CA certificate) fails here, naming the file, not on the first request
        // where it would look like an instance's fault.
        runtime.Transports.EnsureClientReady();
        _runtime = runtime;
        _options = options;
        Endpoint = endpoint;
        _logger = runtime.LoggerFactory.CreateLogger<PushRouter<TRequest, TResponse>>();
        Instances = new InstanceAvailability(endpoint, options.InhibitDuration, runtime.Time, runtime.LoggerFactory.CreateLogger<InstanceAvailability>(), options.Filter, options.FailuresBeforeInhibit, runtime.Metrics);
        _endpointTag = MetricInstruments.EndpointTag(endpoint.Path);
        if (options.Heartbeat is { } heartbeat)
        {
            _heartbeats = new HeartbeatMonitor(heartbeat, runtime.Time, runtime.LoggerFactory.CreateLogger<HeartbeatMonitor>(), OnHeartbeatFailed);
        }

        _watch = WatchLoopAsync(_stop.Token);
    }

    /// <summary>The endpoint this router serves.</summary>
    public EndpointId Endpoint { get; }

    /// <summary>The name of the load-balancing policy in use.</summary>
    public string LoadBalancingPolicy => _policy.Name;

    /// <summary>The instance view (<c>instance_source</c> / <c>instance_avail</c>).</summary>
    public InstanceAvailability Instances { get; }

    /// <summary>Waits until at least one instance is available.</summary>
    /// <exception cref="TimeoutException">None within <paramref name="timeout"/>.</exception>
    /// <remarks>The timeout's message names the discovery store and where it looked, and says so when the store itself was unreachable.</remarks>
    public async Task WaitForInstancesAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        try
        {
            await Instances.WaitForAvailableAsync(timeout, _runtime.Time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"{ex.Message} ({DescribeDiscovery()})", ex);
        }
    }

    /// <summary>Which store the router reads, where, and whether its watch is failing: the context of every "no instances" error.</summary>
    private string DescribeDiscovery() =>
        (_runtime.Store.UnreachableReason ?? Volatile.Read(ref _watchError)) is { } error
            ? $"looked in DYN_STORE_KV={_runtime.Store.Description}, which is unreachable: {error}"
            : $"looked in DYN_STORE_KV={_runtime.Store.Description}";

    /// <summary>
    /// Streams the response to <paramref name="request"/> from instances chosen by the load-balancing policy,
    /// failing over as described on the class.
    /// </summary>
    /// <exception cref="NoInstancesException">No instance is available.</exception>
    /// <exception cref="AttemptsExhaustedException">Every attempt failed; the inner exception is the last attempt's error.</exception>
    /// <exception cref="EndpointFailedException">The endpoint rejected the request (not retried).</exception>
    public IAsyncEnumerable<Annotated<TResponse>> GenerateAsync(TRequest request, CancellationToken cancellationToken = default) =>
        RunAsync(request, null, null, cancellationToken);

    /// <summary>As <see cref="GenerateAsync(TRequest, CancellationToken)"/>, reporting each attempt (instance, outcome) to <paramref name="observer"/>.</summary>
    public IAsyncEnumerable<Annotated<TResponse>> GenerateAsync(TRequest request, IAttemptObserver? observer, CancellationToken cancellationToken = default) =>
        RunAsync(request, null, observer, cancellationToken);

    /// <summary>Streams the response from one named instance (one attempt, no failover).</summary>
    /// <exception cref="InstanceNotFoundException">Discovery does not know that instance.</exception>
    public IAsyncEnumerable<Annotated<TResponse>> DirectAsync(TRequest request, ulong instanceId, CancellationToken cancellationToken = default) =>
        RunAsync(request, instanceId, null, cancellationToken);

    /// <summary>Takes an instance out of rotation for <see cref="RouterOptions.InhibitDuration"/>, logging why.</summary>
    public void ReportInstanceDown(ulong instanceId, string error) => ReportInstanceDown(instanceId, error, "-", 0);

    private void ReportInstanceDown(ulong instanceId, string error, string requestId, int attempt)
    {
        Log.ReportingDown(_logger, instanceId, error, Endpoint.Path, requestId, attempt);
        Instances.ReportInstanceDown(instanceId, error);
    }

    /// <summary>Stops watching discovery.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _watch.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _heartbeats?.Dispose();
        Instances.Dispose();
        _stop.Dispose();
    }

    private void OnHeartbeatFailed(InstanceState instance, string reason)
    {
        _runtime.Metrics.HeartbeatFailed(_endpointTag);
        Instances.ReportInstanceDown(instance.InstanceId, $"heartbeat failed: {reason}");
    }

    private async IAsyncEnumerable<Annotated<TResponse>> RunAsync(TRequest request, ulong? direct, IAttemptObserver? observer, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var payload = new PooledBufferWriter();
        _runtime.Serializer.Serialize(payload, request);
        var requestId = RequestIds.Next();
        var call = CallTracing.StartCall(Endpoint.Path, requestId);
        using var callEnd = new CallTracing.CallEnd(call, cancellationToken);
        using var metrics = CallMetrics.Start(_runtime.Metrics, _endpointTag, _runtime.Time, cancellationToken);
        var budget = new CallBudget(direct is null ? _options.MaxAttempts : 1, direct is null ? Instances.SourceCount + 1 : 1, _options.Migration, _options.MaxRetryWait);
        while (true)
        {
            var instance = PickInstance(direct, budget, metrics, call);
            if (instance is null && await WaitForInstanceAsync(budget, cancellationToken).ConfigureAwait(false))
            {
                // One came back (or a new one appeared) within the wait budget: try it; nothing is counted.
                continue;
            }

            NextStep step;
            if (instance is null)
            {
                // Every instance is inhibited after earlier failures: this attempt fails like the others.
                step = budget.OnNoInstance();
                if (!_options.Migration)
                {
                    yield return Annotated<TResponse>.FromError(NoInstancesException.MessageFor(Endpoint.Path));
                }
            }
            else
            {
                var record = instance.Record;
                metrics?.AttemptStarted(record);
                var resumeFrom = _options.Migration ? budget.Delivered : 0;
                var span = CallTracing.StartAttempt(call, Endpoint.Path, record, budget.AttemptNumber, resumeFrom);
                var (traceParent, traceState) = CallTracing.Propagate(span);
                var header = new RequestHeader(Endpoint.Path, requestId, budget.AttemptNumber, resumeFrom > 0 ? ResumeToken.Create(resumeFrom) : ReadOnlyMemory<byte>.Empty, traceParent, traceState);
                var attempt = new RequestAttempt<TResponse>(_runtime, instance, _options.FirstItemTimeout, _heartbeats);
                observer?.OnAttemptStarted(record, header.Attempt, resumeFrom);
                AttemptOutcome outcome = default;
                try
                {
                    var next = await attempt.StartAsync(header, payload, cancellationToken).ConfigureAwait(false);
                    while (next is null)
                    {
                        next = await attempt.ReadAsync(cancellationToken).ConfigureAwait(false);
                        if (next is null)
                        {
                            budget.Delivered++;
                            metrics?.ItemDelivered();
                            yield return Annotated<TResponse>.FromData(attempt.Current);
                        }
                    }

                    outcome = next.Value;
                }
                finally
                {
                    await attempt.DisposeAsync().ConfigureAwait(false);

                    // A consumer that stops early leaves the outcome unset: the span ends as abandoned.
                    CallTracing.EndAttempt(span, outcome, attempt.ItemsRead);
                    metrics?.AttemptEnded(outcome, budget.IsFreeRetry(outcome));
                }

                observer?.OnAttemptEnded(record, header.Attempt, attempt.ItemsRead, outcome.Result == AttemptResult.Completed ? null : outcome.Error);
                step = OnAttemptEnded(budget, outcome, instance, attempt.ItemsRead, requestId, header.Attempt, call);
                if (step is NextStep.Retry or NextStep.RetryQuietly && outcome.Result != AttemptResult.StaleConnection)
                {
                    CallTracing.Failover(call, record, outcome, header.Attempt);
                }
                if (!_options.Migration && (step == NextStep.Retry || (step == NextStep.Fail && !outcome.EndsCall)))
                {
                    // Without migration the next attempt starts over, so the consumer must know where it begins.
                    yield return Annotated<TResponse>.FromError(outcome.Error);
                }
            }

            switch (step)
            {
                case NextStep.Done:
                    CallTracing.EndCall(call, null);
                    metrics?.End(null);
                    yield break;
                case NextStep.Fail:
                    var error = FinalError(budget);
                    CallTracing.EndCall(call, error);
                    metrics?.End(error);
                    throw error;
                case NextStep.Retry:
                    Log.Retrying(_logger, requestId, budget.FailedAttempts + 1, budget.MaxAttempts, Endpoint.Path);
                    break;
            }
        }
    }

    /// <summary>Feeds passive health (blaming the instance when the outcome says so) and asks the budget what comes next.</summary>
    private NextStep OnAttemptEnded(CallBudget budget, AttemptOutcome outcome, InstanceState instance, long itemsRead, string requestId, int attempt, Activity? call)
    {
        if (outcome.Result == AttemptResult.Completed)
        {
            Instances.ReportSuccess(instance);
        }
        else if (outcome.Result == AttemptResult.Draining)
        {
            // Shutting down and did nothing with the request: leave it alone quietly, it is on its way out.
            Instances.ReportInstanceDown(instance.InstanceId, outcome.Error);
        }
        else if (outcome.BlamesInstance)
        {
            Log.ReportingDown(_logger, instance.InstanceId, outcome.Error, Endpoint.Path, requestId, attempt);
            if (Instances.ReportFailure(instance.InstanceId, outcome.Error))
            {
                CallTracing.Inhibited(call, instance.Record);
            }
        }

        return budget.OnAttemptEnded(outcome, instance.InstanceId, itemsRead);
    }

    /// <summary>
    /// Every instance is inhibited: waits, within what is left of <see cref="RouterOptions.MaxRetryWait"/>, for
    /// one to come back or appear. True when one is available (after a little jitter, so the callers that
    /// waited don't all land on it in the same instant); false when the budget is spent.
    /// </summary>
    private async ValueTask<bool> WaitForInstanceAsync(CallBudget budget, CancellationToken cancellationToken)
    {
        var time = _runtime.Time;
        var started = time.GetTimestamp();
        var backoff = TimeSpan.FromMilliseconds(50);
        var logged = false;
        try
        {
            while (true)
            {
                var changed = Instances.Changed;
                if (Instances.AvailableStates.Length > 0)
                {
                    var jitter = TimeSpan.FromMilliseconds(Random.Shared.Next(0, 50));
                    if (jitter < budget.RetryWaitLeft - time.GetElapsedTime(started))
                    {
                        await Task.Delay(jitter, time, cancellationToken).ConfigureAwait(false);
                    }

                    return true;
                }

                var left = budget.RetryWaitLeft - time.GetElapsedTime(started);
                if (left <= TimeSpan.Zero)
                {
                    return false;
                }

                if (!logged)
                {
                    logged = true;
                    LogWaitingForInstance(Endpoint.Path, left.TotalSeconds);
                }

                try
                {
                    // Woken by any change; the growing, jittered timeout is a backstop, never the main path.
                    await changed.WaitAsync(Min(left, backoff), time, cancellationToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                }

                backoff = Min(backoff * (1.5 + Random.Shared.NextDouble()), TimeSpan.FromSeconds(2));
            }
        }
        finally
        {
            budget.SpendRetryWait(time.GetElapsedTime(started));
        }

        static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
    }

    /// <summary>The exception a failed call ends with: the attempt's own error, or every attempt used up with the last real error inside.</summary>
    private Exception FinalError(CallBudget budget)
    {
        var last = budget.LastFailure;
        return last switch
        {
            { Result: AttemptResult.Rejected } r => new EndpointFailedException(r.Error, r.Exception),
            { Result: AttemptResult.LocalFailure, Exception: { } ex } => ex,
            _ => AttemptsExhaustedException.Create(budget.FailedAttempts, Endpoint.Path, last, budget.LastFoundNoInstance),
        };
    }

    /// <summary>
    /// The instance for the next attempt: the named one (direct), else the policy's pick among available
    /// instances this request has not failed on (or, if it failed on all of them, among every available one).
    /// Null when none is available on a retry; the first attempt throws instead.
    /// </summary>
    private InstanceState? PickInstance(ulong? direct, CallBudget budget, CallMetrics? metrics, Activity? call)
    {
        if (direct is { } id)
        {
            return Instances.FindState(id) ?? throw Failed(new InstanceNotFoundException(id, Endpoint.Path));
        }

        var available = Instances.AvailableStates;
        if (available.Length == 0)
        {
            return budget.AttemptNumber == 1 ? throw Failed(new NoInstancesException(Endpoint.Path, DescribeDiscovery())) : null;
        }

        IReadOnlyList<InstanceState> candidates = available;
        if (budget.FailedOn is { } failed)
        {
            var fresh = Array.FindAll(available, s => !failed.Contains(s.InstanceId));
            if (fresh.Length > 0)
            {
                candidates = fresh;
            }
        }

        return _policy.PickInstance(candidates);

        Exception Failed(Exception error)
        {
            CallTracing.EndCall(call, error);
            return CallMetrics.Failed(metrics, error);
        }
    }

    private async Task WatchLoopAsync(CancellationToken ct)
    {
        var failures = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                // A restarted watch replays what exists; whatever it does not replay left while it was down.
                Instances.BeginResync();
                await foreach (var change in _runtime.Registry.WatchAsync(Endpoint, ct).ConfigureAwait(false))
                {
                    failures = 0;
                    Volatile.Write(ref _watchError, null);
                    if (change.Kind == InstanceChangeKind.Removed && Instances.FindState(change.InstanceId)?.Record is { } gone
                        && !Instances.Source.Any(r => r.InstanceId != gone.InstanceId && r.Address == gone.Address))
                    {
                        // Its pooled connections would only wait for the idle sweep; nothing will use them again
                        // (unless another instance is listed at the same address, which keeps them).
                        _runtime.Transports.ForgetInstance(gone);
                    }

                    Instances.Apply(change);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is not ObjectDisposedException)
            {
                // Keep routing to the instances we last knew while discovery is unreachable.
                Volatile.Write(ref _watchError, ex.Message);
                if (failures++ == 0)
                {
                    LogWatchFailed(Endpoint.Path, ex.Message);
                }
            }

            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5000, 250 * (1 << Math.Min(failures, 5)))), _runtime.Time, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }



    [LoggerMessage(Level = LogLevel.Information, Message = "every instance of endpoint={Endpoint} is inhibited; waiting up to {Seconds:0.#} s for one to come back")]
    private partial void LogWaitingForInstance(string endpoint, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "discovery watch for endpoint={Endpoint} failed ({Reason}); routing to the last known instances until it recovers")]
    private partial void LogWatchFailed(string endpoint, string reason);
}
