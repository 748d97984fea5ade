namespace RequestMigration.Bench;

/// <summary>
/// Counts and durations of one run. <c>--quick</c> keeps the whole run near a minute on 2 cores (CI-sized,
/// noisy); the full run is what docs/benchmarks.md quotes and stays within about ten minutes.
/// </summary>
internal sealed record BenchSettings
{
    public required bool Quick { get; init; }

    /// <summary>Items in one throughput stream, and how many timed repetitions (the median is reported).</summary>
    public required int ThroughputItems { get; init; }

    public required int ThroughputRepetitions { get; init; }

    /// <summary>
    /// Minimum warm-up per variant. Time-based, not count-based: tiered JIT promotes the per-item paths to
    /// optimised code only after a delay that start-up activity keeps extending, and early repetitions measured
    /// 5-10x below steady state when warm-up was a fixed number of streams.
    /// </summary>
    public required TimeSpan ThroughputWarmup { get; init; }

    /// <summary>Concurrent callers and timed window of the request-rate figure.</summary>
    public int RequestCallers { get; init; } = 32;

    /// <summary>Callers of the second request-rate figure: many more concurrent streams than connections.</summary>
    public int HighFanInCallers { get; init; } = 256;

    public int RequestItems { get; init; } = 10;

    public required TimeSpan RequestWarmup { get; init; }

    /// <summary>
    /// Ours and gRPC are timed in alternating rounds, so background load on a shared machine hits both alike;
    /// the figure is over all rounds together.
    /// </summary>
    public required int RequestRounds { get; init; }

    public required TimeSpan RequestRoundDuration { get; init; }

    /// <summary>Failovers timed (at least 200, as the figure asks).</summary>
    public required int Failovers { get; init; }

    /// <summary>Register/remove cycles per discovery store.</summary>
    public required int PropagationCyclesMem { get; init; }

    public required int PropagationCyclesFile { get; init; }

    public required int PropagationCyclesEtcd { get; init; }

    /// <summary>Alternating rounds per policy of the skewed-load figure, and how long each lasts.</summary>
    public required int SkewedRounds { get; init; }

    public required TimeSpan SkewedRoundDuration { get; init; }

    /// <summary>Idle streams wanted; reduced when the open-file limit is too low.</summary>
    public required int IdleStreams { get; init; }

    public static BenchSettings For(bool quick) => quick
        ? new BenchSettings
        {
            Quick = true,
            ThroughputItems = 200_000,
            ThroughputRepetitions = 3,
            ThroughputWarmup = TimeSpan.FromSeconds(2.5),
            RequestWarmup = TimeSpan.FromSeconds(3),
            RequestRounds = 2,
            RequestRoundDuration = TimeSpan.FromSeconds(2),
            Failovers = 200,
            PropagationCyclesMem = 50,
            PropagationCyclesFile = 20,
            PropagationCyclesEtcd = 20,
            SkewedRounds = 2,
            SkewedRoundDuration = TimeSpan.FromSeconds(2),
            IdleStreams = 2_000,
        }
        : new BenchSettings
        {
            Quick = false,
            ThroughputItems = 1_000_000,
            ThroughputRepetitions = 7,
            ThroughputWarmup = TimeSpan.FromSeconds(5),
            RequestWarmup = TimeSpan.FromSeconds(5),
            RequestRounds = 5,
            RequestRoundDuration = TimeSpan.FromSeconds(4),
            Failovers = 1_000,
            PropagationCyclesMem = 500,
            PropagationCyclesFile = 200,
            PropagationCyclesEtcd = 200,
            SkewedRounds = 4,
            SkewedRoundDuration = TimeSpan.FromSeconds(5),
            IdleStreams = 10_000,
        };
}
