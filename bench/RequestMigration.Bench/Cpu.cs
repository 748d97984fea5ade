using System.Diagnostics;

namespace RequestMigration.Bench;

/// <summary>Process CPU time (user + system, all threads): the cost of a figure independent of how busy the machine is.</summary>
internal static class Cpu
{
    public static TimeSpan ProcessTime()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }

    /// <summary>The 1-minute load average from /proc/loadavg (null where there is none): how shared the machine was.</summary>
    public static double? LoadAverage()
    {
        try
        {
            var text = File.ReadAllText("/proc/loadavg");
            return double.Parse(text.Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or FormatException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
