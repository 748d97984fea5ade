namespace RequestMigration.Health;

/// <summary>How a router decides, from heartbeats, that an instance is dead.</summary>
public enum HeartbeatDetector
{
    /// <summary>Failed after <see cref="HeartbeatOptions.MissesBeforeFailure"/> pings in a row got no reply within <see cref="HeartbeatOptions.Timeout"/> (the seed's rule).</summary>
    ConsecutiveMisses,

    /// <summary>Failed when the phi accrual detector, fed by every reply, exceeds <see cref="HeartbeatOptions.PhiThreshold"/>.</summary>
    PhiAccrual,
}

/// <summary>
/// Active health (<see cref="Routing.RouterOptions.Heartbeat"/>): while a router has a stream open to an
/// instance it pings the instance on one of those streams every <see cref="Interval"/>; the server's session
/// layer answers, not the handler. When the detector declares the instance failed, it is inhibited and every
/// stream to it is broken, so requests fail over (or migrate) before a hung instance stalls them. Defaults
/// follow the seed: every 5 s, 3 s timeout, 2 misses in a row.
/// </summary>
public sealed class HeartbeatOptions
{
    /// <summary>Time between pings to one instance (<c>DYN_HEARTBEAT_INTERVAL_SECS</c>). Default 5 s.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a ping waits for its reply before it counts as missed (<c>DYN_HEARTBEAT_TIMEOUT_SECS</c>). Default 3 s.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Missed pings in a row that declare the instance failed (<c>DYN_HEARTBEAT_MISSES</c>, 1..100). Default 2.</summary>
    public int MissesBeforeFailure { get; set; } = 2;

    /// <summary>Which rule declares failure (<c>DYN_HEARTBEAT_DETECTOR</c> = <c>misses</c> or <c>phi</c>). Default consecutive misses.</summary>
    public HeartbeatDetector Detector { get; set; } = HeartbeatDetector.ConsecutiveMisses;

    /// <summary>Phi above which the instance is declared failed (<c>DYN_HEARTBEAT_PHI_THRESHOLD</c>). Default 8, as Akka and Cassandra use.</summary>
    public double PhiThreshold { get; set; } = 8;

    /// <summary>Lowest standard deviation the phi detector assumes, so a very regular peer is not suspected after a tiny delay. Default 100 ms (Akka's).</summary>
    public TimeSpan PhiMinStdDeviation { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Silence the phi detector tolerates beyond the usual interval (pauses, hiccups). Default 3 s (Akka's acceptable pause).</summary>
    public TimeSpan PhiAcceptablePause { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>How many reply intervals the phi detector remembers. Default 100.</summary>
    public int PhiWindowSize { get; set; } = 100;

    /// <summary>Told of every reply, miss and failure verdict (for logs and tools); none by default.</summary>
    public IHeartbeatObserver? Observer { get; set; }

    /// <summary>Rejects values that cannot work, naming the option.</summary>
    public void Validate()
    {
        if (Interval < TimeSpan.FromMilliseconds(10))
        {
            throw new ArgumentOutOfRangeException(nameof(Interval), Interval, "Heartbeat.Interval (DYN_HEARTBEAT_INTERVAL_SECS) must be at least 10 ms");
        }

        if (Timeout <= TimeSpan.Zero || Timeout > Interval)
        {
            throw new ArgumentOutOfRangeException(nameof(Timeout), Timeout, "Heartbeat.Timeout (DYN_HEARTBEAT_TIMEOUT_SECS) must be positive and at most the interval");
        }

        if (MissesBeforeFailure is < 1 or > 100)
        {
            throw new ArgumentOutOfRangeException(nameof(MissesBeforeFailure), MissesBeforeFailure, "Heartbeat.MissesBeforeFailure (DYN_HEARTBEAT_MISSES) must be between 1 and 100");
        }

        if (!Enum.IsDefined(Detector))
        {
            throw new ArgumentOutOfRangeException(nameof(Detector), Detector, "unknown heartbeat detector");
        }

        if (!(PhiThreshold > 0) || !double.IsFinite(PhiThreshold))
        {
            throw new ArgumentOutOfRangeException(nameof(PhiThreshold), PhiThreshold, "Heartbeat.PhiThreshold (DYN_HEARTBEAT_PHI_THRESHOLD) must be a positive number");
        }

        if (PhiMinStdDeviation <= TimeSpan.Zero || PhiAcceptablePause < TimeSpan.Zero || PhiWindowSize is < 2 or > 10_000)
        {
            throw new ArgumentOutOfRangeException(nameof(PhiWindowSize), "phi settings: PhiMinStdDeviation must be positive, PhiAcceptablePause not negative, PhiWindowSize 2..10000");
        }
    }

    /// <summary>Parses <c>misses</c> or <c>phi</c> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Any other value, naming <paramref name="source"/> and the valid values.</exception>
    internal static HeartbeatDetector ParseDetector(string value, string source = "DYN_HEARTBEAT_DETECTOR") =>
        value.Trim().ToLowerInvariant() switch
        {
            "misses" or "consecutivemisses" => HeartbeatDetector.ConsecutiveMisses,
            "phi" or "phiaccrual" or "phi-accrual" => HeartbeatDetector.PhiAccrual,
            _ => throw new ArgumentException($"{source}='{value}' is not a heartbeat detector; valid: misses, phi", source),
        };
}
