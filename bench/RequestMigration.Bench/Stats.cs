using System.Diagnostics;

namespace RequestMigration.Bench;

/// <summary>Timing helpers: everything is measured with <see cref="Stopwatch.GetTimestamp"/> ticks.</summary>
internal static class Stats
{
    public static double ToMs(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    public static double ElapsedSeconds(long start, long end) => (end - start) / (double)Stopwatch.Frequency;

    /// <summary>Nearest-rank percentile (p in 0..100) of tick samples, in milliseconds.</summary>
    public static double PercentileMs(IReadOnlyList<long> samples, double p)
    {
        if (samples.Count == 0)
        {
            return double.NaN;
        }

        var sorted = samples.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Length);
        return ToMs(sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)]);
    }

    public static double MaxMs(IReadOnlyList<long> samples) => samples.Count == 0 ? double.NaN : ToMs(samples.Max());

    public static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN
            : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2]
            : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    public static double Ratio(double ours, double theirs) => theirs > 0 && !double.IsNaN(ours) ? ours / theirs : double.NaN;
}
