namespace RequestMigration.Health;

/// <summary>
/// The phi accrual failure detector (Hayashibara et al., as in Akka and Cassandra): from a window of
/// heartbeat inter-arrival times it computes phi = -log10(P(no heartbeat for this long)). Phi grows with
/// silence; a peer is suspected once phi exceeds the threshold (8: about one false suspicion in 10^8).
/// Pure: every call takes the time, so tests drive it with any clock. Not thread-safe.
/// </summary>
internal sealed class PhiAccrualFailureDetector
{
    private readonly double _threshold;
    private readonly double _minStdMs;
    private readonly double _acceptablePauseMs;
    private readonly int _window;
    private readonly Queue<double> _intervals = new();
    private double _sum;
    private double _squares;
    private DateTimeOffset? _last;

    /// <param name="threshold">Phi above which the peer is suspected.</param>
    /// <param name="minStdDeviation">Floor of the standard deviation, so a very regular peer is not suspected after a tiny delay.</param>
    /// <param name="acceptablePause">Extra silence tolerated on top of the mean interval (GC pauses, network hiccups).</param>
    /// <param name="windowSize">How many inter-arrival times are remembered.</param>
    /// <param name="firstInterval">Expected interval before any was measured (the heartbeat interval).</param>
    public PhiAccrualFailureDetector(double threshold, TimeSpan minStdDeviation, TimeSpan acceptablePause, int windowSize, TimeSpan firstInterval)
    {
        _threshold = threshold;
        _minStdMs = minStdDeviation.TotalMilliseconds;
        _acceptablePauseMs = acceptablePause.TotalMilliseconds;
        _window = windowSize;

        // As Akka does: start from two samples around the expected interval, so phi is meaningful at once.
        var mean = firstInterval.TotalMilliseconds;
        var std = mean / 4;
        Add(mean - std);
        Add(mean + std);
    }

    public double Threshold => _threshold;

    /// <summary>A heartbeat reply arrived at <paramref name="at"/>.</summary>
    public void Heartbeat(DateTimeOffset at)
    {
        if (_last is { } last)
        {
            Add(Math.Max(0, (at - last).TotalMilliseconds));
        }

        _last = at;
    }

    /// <summary>Starts the clock without an interval sample (the first heartbeat is due one interval from now).</summary>
    public void Start(DateTimeOffset at) => _last ??= at;

    /// <summary>Phi at <paramref name="now"/>; 0 before the clock started.</summary>
    public double Phi(DateTimeOffset now)
    {
        if (_last is not { } last)
        {
            return 0;
        }

        var n = _intervals.Count;
        var mean = _sum / n;
        var variance = Math.Max(0, (_squares / n) - (mean * mean));
        var std = Math.Max(Math.Sqrt(variance), _minStdMs);
        return Phi((now - last).TotalMilliseconds, mean + _acceptablePauseMs, std);
    }

    public bool IsSuspected(DateTimeOffset now) => Phi(now) > _threshold;

    /// <summary>The logistic approximation of the normal CDF Akka uses; large values are capped, never infinite.</summary>
    internal static double Phi(double elapsedMs, double meanMs, double stdMs)
    {
        var y = (elapsedMs - meanMs) / stdMs;
        var e = Math.Exp(-y * (1.5976 + (0.070566 * y * y)));
        var phi = elapsedMs > meanMs ? -Math.Log10(e / (1.0 + e)) : -Math.Log10(1.0 - (1.0 / (1.0 + e)));
        return double.IsFinite(phi) ? phi : 1000;
    }

    private void Add(double intervalMs)
    {
        if (_intervals.Count >= _window)
        {
            var old = _intervals.Dequeue();
            _sum -= old;
            _squares -= old * old;
        }

        _intervals.Enqueue(intervalMs);
        _sum += intervalMs;
        _squares += intervalMs * intervalMs;
    }
}
