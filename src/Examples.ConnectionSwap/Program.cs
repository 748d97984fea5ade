using System.Runtime.InteropServices;
using Examples.ConnectionSwap;
using RequestMigration.Examples;
using RequestMigration.Discovery;
using Microsoft.Extensions.Logging;
using Serilog;
using Serilog.Extensions.Logging;

// The connection-swap example: a director, workers and a client whose token sequence survives worker (and
// director) failures. One program, three roles:
//   dotnet run --project src/Examples.ConnectionSwap -- director|worker|client
const string Usage = "expected one role: director, worker or client (dotnet run --project src/Examples.ConnectionSwap -- director|worker|client)";
var role = args.Length == 1 ? args[0].Trim().ToLowerInvariant() : null;
if (role is not ("director" or "worker" or "client"))
{
    Console.Error.WriteLine(args.Length == 0 ? $"error: no role given; {Usage}" : $"error: unknown role '{string.Join(' ', args)}'; {Usage}");
    return 2;
}

// Every setting is checked before anything starts: a mistake is one line naming the variable, exit code 2.
var settings = new Settings();
ExampleTelemetry telemetry;
try
{
    settings.Validate(role);
    telemetry = ExampleTelemetry.FromEnvironment();
}
catch (Exception ex) when (ex is ConfigurationException or ArgumentException)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}

using var serilog = new LoggerConfiguration()
    .MinimumLevel.Is(settings.Level)
    .WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Message:lj}{NewLine}{Exception}")
    .CreateLogger();

// The runtime's own lines (instances reported down, failovers) show only what went wrong. Where the example
// already says the same in its own words (a client's retries, a worker's heartbeats to a director that is
// down), they would repeat it on every retry: those runtimes log errors only.
// (AddSerilog adds a rule of its own for its provider, so these must name the provider to take effect.)
using var loggerFactory = LoggerFactory.Create(b => b.AddSerilog(serilog).AddFilter<SerilogLoggerProvider>("RequestMigration", LogLevel.Warning));
using var quietFactory = LoggerFactory.Create(b => b.AddSerilog(serilog).AddFilter<SerilogLoggerProvider>("RequestMigration", LogLevel.Error));

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    stop.Cancel();
});

try
{
    // Traces and metrics to DYN_OTEL_EXPORTER and/or a Prometheus scrape endpoint (DYN_METRICS_PROMETHEUS_PORT).
    // The roles' runtimes (several per process) record on the process-wide RequestMigration meter, which the
    // provider listens to by name as it would to one from a container's IMeterFactory. Disposed after the role
    // has stopped its runtimes, so what they record while stopping is exported.
    await using var telemetryServices = telemetry.StartWithoutHost($"Examples.ConnectionSwap.{role}");
    switch (role)
    {
        case "director":
            await new Director(settings, loggerFactory).RunAsync(stop.Token);
            return 0;
        case "worker":
            await new Worker(settings, loggerFactory, quietFactory).RunAsync(stop.Token);
            return 0;
        default:
            return await new Client(settings, quietFactory).RunAsync(stop.Token);
    }
}
catch (OperationCanceledException) when (stop.IsCancellationRequested)
{
    // Stopped while starting.
    return 0;
}
catch (ConfigurationException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}
catch (Exception ex) when (ex is FileNotFoundException or ArgumentException)
{
    // Certificates and other local configuration of the runtime: one line, no stack trace.
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}
catch (StoreUnavailableException ex)
{
    Console.Error.WriteLine($"error: cannot register with the discovery store: {ex.Message}. Check DYN_STORE_KV and DYN_FILE_KV / ETCD_ENDPOINTS.");
    return 1;
}
