using System.Diagnostics;
using System.Globalization;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;
using Attr = RequestMigration.Diagnostics.RuntimeTelemetry.Attributes;

namespace RequestMigration.Routing;

/// <summary>
/// The metrics of one router call (see <see cref="RuntimeMetrics.Instruments"/>): its duration, time to first
/// item, attempts, failovers and the gaps they left, and its place among the active streams. Null when no
/// router instrument was observed as the call started, so an unobserved router does no bookkeeping. One per
/// call, used by the call's iterator only; not thread-safe.
/// </summary>
internal sealed class CallMetrics : IDisposable
{
    private readonly MetricInstruments _instruments;
    private readonly KeyValuePair<string, object?> _endpoint;
    private readonly TimeProvider _time;
    private readonly CancellationToken _cancellation;
    private readonly long _started;

    // Whether this call added itself to the active streams, so it takes itself off exactly when it did.
    private readonly bool _active;
    private InstanceRecord? _attempt;
    private bool _seenItem;

    // The last attempt failed and no other has started yet: the next one is a failover, for this reason.
    private string? _failedOver;

    // When the stream stood still: the end of the first failed attempt since the last item (0: it is not).
    private long _gapStarted;
    private string? _gapCause;
    private bool _ended;
    private string? _errorType;

    private CallMetrics(MetricInstruments instruments, KeyValuePair<string, object?> endpoint, TimeProvider time, CancellationToken cancellation)
    {
        _instruments = instruments;
        _endpoint = endpoint;
        _time = time;
        _cancellation = cancellation;
        _started = time.GetTimestamp();
        if (instruments.RouterActiveStreams.Enabled)
        {
            _active = true;
            instruments.RouterActiveStreams.Add(1, endpoint);
        }
    }

    /// <summary>Starts measuring a call; null when no router instrument is observed.</summary>
    public static CallMetrics? Start(MetricInstruments instruments, KeyValuePair<string, object?> endpoint, TimeProvider time, CancellationToken cancellation) =>
        instruments.RouterCallsEnabled ? new CallMetrics(instruments, endpoint, time, cancellation) : null;

    /// <summary>Records <paramref name="error"/> as how the call ended and returns it, for <c>throw CallMetrics.Failed(m, new …)</c>.</summary>
    public static Exception Failed(CallMetrics? metrics, Exception error)
    {
        metrics?.End(error);
        return error;
    }

    /// <summary>An attempt on <paramref name="instance"/> starts; after a failed one, that is a failover.</summary>
    public void AttemptStarted(InstanceRecord instance)
    {
        _attempt = instance;
        if (_failedOver is { } reason)
        {
            _failedOver = null;
            if (_instruments.Failovers.Enabled)
            {
                _instruments.Failovers.Add(1, _endpoint, new(Attr.ErrorType, reason));
            }
        }
    }

    /// <summary>
    /// The attempt ended (or was abandoned: <paramref name="outcome"/> unset). <paramref name="freeRetry"/>: the
    /// router retries elsewhere without using up an attempt, so this one is not counted.
    /// </summary>
    public void AttemptEnded(AttemptOutcome outcome, bool freeRetry)
    {
        if (_attempt is not { } instance)
        {
            return;
        }

        _attempt = null;

        // Abandoned (the consumer stopped or cancelled mid-attempt) is not a failure of the attempt, as on its span.
        var errorType = outcome.Error is null || outcome.Result == AttemptResult.Completed ? null : AttemptOutcome.Name(outcome.Result);
        if (!freeRetry && _instruments.Attempts.Enabled)
        {
            var tags = new TagList
            {
                _endpoint,
                { Attr.InstanceId, instance.InstanceId.ToString("x", CultureInfo.InvariantCulture) },
                { Attr.Transport, instance.Transport },
            };
            if (errorType is not null)
            {
                tags.Add(Attr.ErrorType, errorType);
            }

            _instruments.Attempts.Add(1, tags);
        }

        // A stale pooled connection is not the instance failing, and nothing reached a handler: no failover, no gap.
        if (errorType is not null && outcome.Result != AttemptResult.StaleConnection)
        {
            _failedOver = errorType;
            if (_gapStarted == 0)
            {
                _gapStarted = _time.GetTimestamp();
                _gapCause = errorType;
            }
        }
    }

    /// <summary>An item reaches the consumer.</summary>
    public void ItemDelivered()
    {
        if (!_seenItem)
        {
            _seenItem = true;
            if (_instruments.TimeToFirstItem.Enabled)
            {
                _instruments.TimeToFirstItem.Record(_time.GetElapsedTime(_started).TotalSeconds, _endpoint);
            }
        }

        if (_gapStarted != 0)
        {
            if (_instruments.FailoverGap.Enabled)
            {
                _instruments.FailoverGap.Record(_time.GetElapsedTime(_gapStarted).TotalSeconds, _endpoint, new(Attr.ErrorType, _gapCause));
            }

            _gapStarted = 0;
            _gapCause = null;
        }
    }

    /// <summary>The call ended: completed (<paramref name="error"/> null) or failed with <paramref name="error"/>.</summary>
    public void End(Exception? error)
    {
        if (!_ended)
        {
            _ended = true;

            // The exception's type name, as the call span's error.type.
            _errorType = error?.GetType().Name;
        }
    }

    /// <summary>Records the call's duration and takes it off the active streams, however it ended.</summary>
    public void Dispose()
    {
        if (!_ended)
        {
            // Neither completed nor failed with an error of the router's: a consumer that stopped early is not a
            // failure; a cancelled call is (as HttpClient's metrics count it).
            _ended = true;
            _errorType = _cancellation.IsCancellationRequested ? nameof(OperationCanceledException) : null;
        }

        if (_instruments.CallDuration.Enabled)
        {
            var duration = _time.GetElapsedTime(_started).TotalSeconds;
            if (_errorType is null)
            {
                _instruments.CallDuration.Record(duration, _endpoint);
            }
            else
            {
                _instruments.CallDuration.Record(duration, _endpoint, new(Attr.ErrorType, _errorType));
            }
        }

        if (_active)
        {
            _instruments.RouterActiveStreams.Add(-1, _endpoint);
        }
    }
}
