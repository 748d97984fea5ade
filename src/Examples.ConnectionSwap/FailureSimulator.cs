using Microsoft.Extensions.Logging;
using RequestMigration.Serving;
using RequestMigration.Wire;

namespace Examples.ConnectionSwap;

/// <summary>
/// A worker's simulated failures. Once the worker is serving, it fails after a random
/// <c>CONNECTION_SWAP_FAILURE_MIN_SECS</c>..<c>MAX_SECS</c>: every stream it serves is cut as a crash would cut it,
/// it is unavailable for <c>CONNECTION_SWAP_RECOVERY_SECS</c> (rejecting new streams), then it recovers and the
/// clock starts again with its next stream. An idle worker does not fail: there would be nothing to see.
/// </summary>
internal sealed class FailureSimulator(string label, bool enabled, TimeSpan min, TimeSpan max, TimeSpan recovery, ILogger logger)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, int> _active = new(StringComparer.Ordinal);
    private CancellationTokenSource _crash = new();
    private TaskCompletionSource _serving = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private WorkerState _state = WorkerState.Ready;
    private DateTimeOffset _recoverAt;

    /// <summary>Called after the worker marks itself unavailable and before its streams break (tell the directors).</summary>
    public Func<Task>? BeforeBreak { get; set; }

    public WorkerState State
    {
        get
        {
            lock (_gate)
            {
                return _state;
            }
        }
    }

    public TimeSpan RecoveryLeft
    {
        get
        {
            lock (_gate)
            {
                return _state == WorkerState.Recovering ? Max(_recoverAt - DateTimeOffset.UtcNow, TimeSpan.Zero) : TimeSpan.Zero;
            }
        }
    }

    /// <summary>Completes at the next change of <see cref="State"/>.</summary>
    public Task Changed
    {
        get
        {
            lock (_gate)
            {
                return _changed.Task;
            }
        }
    }

    public int ActiveStreams
    {
        get
        {
            lock (_gate)
            {
                return _active.Values.Sum();
            }
        }
    }

    /// <summary>A stream starts: returns the token that fires when the worker fails.</summary>
    /// <exception cref="EndpointErrorException">The worker is recovering: the stream is refused before any token.</exception>
    public CancellationToken BeginStream(string connection)
    {
        lock (_gate)
        {
            if (_state != WorkerState.Ready)
            {
                var left = Max(_recoverAt - DateTimeOffset.UtcNow, TimeSpan.Zero).TotalSeconds;

                // The runtime's documented way for a handler to say "go elsewhere" is an error carrying the
                // stream-incomplete text: routers fail over to another worker instead of giving up.
                throw new EndpointErrorException($"{label} is unavailable: recovering from a failure for another {left:0.0} s ({StreamErrors.StreamIncomplete})");
            }

            _active[connection] = _active.GetValueOrDefault(connection) + 1;
            if (enabled)
            {
                _serving.TrySetResult();
            }

            return _crash.Token;
        }
    }

    public void EndStream(string connection)
    {
        lock (_gate)
        {
            if (_active.TryGetValue(connection, out var n))
            {
                if (n <= 1)
                {
                    _active.Remove(connection);
                }
                else
                {
                    _active[connection] = n - 1;
                }
            }
        }
    }

    /// <summary>Fails and recovers, over and over, until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                Task serving;
                lock (_gate)
                {
                    serving = _serving.Task;
                }

                await serving.WaitAsync(cancellationToken).ConfigureAwait(false);
                var after = min + ((max - min) * Random.Shared.NextDouble());
                Log.FailureScheduled(logger, label, after.TotalSeconds);
                await Task.Delay(after, cancellationToken).ConfigureAwait(false);
                await FailAsync(after).ConfigureAwait(false);
                await Task.Delay(recovery, cancellationToken).ConfigureAwait(false);
                Recover();
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task FailAsync(TimeSpan after)
    {
        CancellationTokenSource crash;
        string[] connections;
        lock (_gate)
        {
            _state = WorkerState.Recovering;
            _recoverAt = DateTimeOffset.UtcNow + recovery;
            crash = _crash;
            _crash = new CancellationTokenSource();
            connections = [.. _active.Keys];
            SignalChangedLocked();
        }

        foreach (var connection in connections)
        {
            Log.SimulatingFailure(logger, label, connection, after.TotalSeconds);
        }

        Log.EnteringRecovery(logger, label, recovery.TotalSeconds);
        if (BeforeBreak is { } notify)
        {
            // Out of the directors' pools first, so no router picks this worker for the streams it is about to break.
            await notify().ConfigureAwait(false);
        }

        await crash.CancelAsync().ConfigureAwait(false);
    }

    private void Recover()
    {
        lock (_gate)
        {
            _state = WorkerState.Ready;
            _serving = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            SignalChangedLocked();
        }

        Log.Recovered(logger, label);
    }

    private void SignalChangedLocked()
    {
        _changed.TrySetResult();
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
