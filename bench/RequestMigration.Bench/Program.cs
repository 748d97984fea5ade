using System.Diagnostics;
using System.Globalization;
using RequestMigration.Bench;
using RequestMigration.Transport;

// RequestMigration vs gRPC on loopback with TLS. Progress goes to stderr, the markdown table to stdout,
// JSON to --out. Usage: dotnet run -c Release --project bench/RequestMigration.Bench -- [--quick] [--out results.json]
if (args is [IdleStreamMemory.ChildFlag, var childSide])
{
    return await IdleStreamMemory.ServeAsync(childSide);
}

var quick = false;
string? outPath = null;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--quick":
            quick = true;
            break;
        case "--out" when i + 1 < args.Length:
            outPath = args[++i];
            break;
        case "-h" or "--help":
            Console.WriteLine("usage: RequestMigration.Bench [--quick] [--out results.json]");
            return 0;
        default:
            Console.Error.WriteLine($"error: unknown argument '{args[i]}'; usage: RequestMigration.Bench [--quick] [--out results.json]");
            return 2;
    }
}

var settings = BenchSettings.For(quick);
var results = new BenchResults { Quick = quick, OpenFilesLimit = OpenFilesLimit() };
var started = Stopwatch.GetTimestamp();
Console.Error.WriteLine($"RequestMigration.Bench: {(quick ? "quick" : "full")} run on {Environment.ProcessorCount} cores, {results.Runtime}");

await RunTransportAsync(TransportKind.Tcp, results);
if (TransportKinds.IsQuicSupported)
{
    results.Quic = new TransportFigures();
    await RunTransportAsync(TransportKind.Quic, results.Quic);
}
else
{
    results.QuicSkippedReason = "System.Net.Quic.QuicConnection.IsSupported is false here: libmsquic 2.2+ is not installed";
    Console.Error.WriteLine($"QUIC skipped: {results.QuicSkippedReason}");
}

Console.Error.WriteLine("== load balancing under skew");
try
{
    results.SkewedLoad = await SkewedLoad.RunAsync(settings);
}
catch (Exception ex)
{
    results.Errors.Add($"skewed load: {ex.GetType().Name}: {ex.Message}");
    Console.Error.WriteLine($"  FAILED: {ex}");
}

Console.Error.WriteLine("== discovery propagation");
try
{
    results.Propagation = await Propagation.RunAsync(settings);
}
catch (Exception ex)
{
    results.Errors.Add($"discovery propagation: {ex.GetType().Name}: {ex.Message}");
    Console.Error.WriteLine($"  FAILED: {ex}");
}

results.ElapsedSec = Stats.ElapsedSeconds(started, Stopwatch.GetTimestamp());
results.LoadAverageEnd = Cpu.LoadAverage();
Console.WriteLine(TablePrinter.Render(results));
if (outPath is not null)
{
    await File.WriteAllTextAsync(outPath, results.ToJson());
    Console.Error.WriteLine($"wrote {Path.GetFullPath(outPath)}");
}

return results.Errors.Count == 0 && (results.Quic?.Errors.Count ?? 0) == 0 ? 0 : 1;

async Task RunTransportAsync(TransportKind transport, TransportFigures figures)
{
    var name = transport == TransportKind.Quic ? TransportKinds.Quic : TransportKinds.Tcp;
    figures.Transport = name;
    figures.ThroughputItems = settings.ThroughputItems;

    // gRPC (always HTTP/2 over TCP) is measured inside the same figures, interleaved with ours.
    await Section($"{name} throughput (ours, raw, gRPC)", figures, () => Throughput.RunAsync(transport, settings, figures));
    await Section($"{name} request rate, {settings.RequestCallers} callers (ours, gRPC)", figures, () => RequestRate.RunAsync(transport, settings, settings.RequestCallers, figures.RequestRate));
    await Section($"{name} request rate, {settings.HighFanInCallers} callers (ours, gRPC)", figures, () => RequestRate.RunAsync(transport, settings, settings.HighFanInCallers, figures.RequestRateHighFanIn));
    await Section($"{name} failover gap", figures, () => FailoverGap.RunAsync(transport, settings, figures));
    await Section($"{name} idle-stream memory (ours, gRPC)", figures, () => IdleStreamMemory.RunAsync(transport, settings, figures, results.OpenFilesLimit));
    figures.ComputeRatios();
}

// One figure failing must not hide the others: record the error, print what was measured, exit 1.
static async Task Section(string name, TransportFigures figures, Func<Task> run)
{
    Console.Error.WriteLine($"== {name}");
    var t0 = Stopwatch.GetTimestamp();
    try
    {
        await run();
    }
    catch (Exception ex)
    {
        figures.Errors.Add($"{name}: {ex.GetType().Name}: {ex.Message}");
        Console.Error.WriteLine($"  FAILED: {ex}");
    }

    Console.Error.WriteLine($"  ({Stats.ElapsedSeconds(t0, Stopwatch.GetTimestamp()):0.0} s)");
}

// The soft RLIMIT_NOFILE (what `ulimit -n` prints), from /proc; null where there is no /proc.
static long? OpenFilesLimit()
{
    try
    {
        foreach (var line in File.ReadLines("/proc/self/limits"))
        {
            if (line.StartsWith("Max open files", StringComparison.Ordinal))
            {
                var soft = line["Max open files".Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
                return soft == "unlimited" ? long.MaxValue : long.Parse(soft, CultureInfo.InvariantCulture);
            }
        }
    }
    catch (IOException)
    {
    }

    return null;
}
