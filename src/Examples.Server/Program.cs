using Examples.Server;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RequestMigration;
using RequestMigration.Discovery;
using RequestMigration.Examples;
using RequestMigration.Hosting;
using RequestMigration.Serving;
using Serilog;
using Serilog.Events;
using Serilog.Filters;

// The request-migration example server: serves demo/backend/generate, optionally failing on purpose.
var serverName = Environment.GetEnvironmentVariable("SERVER_NAME") is { Length: > 0 } n ? n : "server";
if (!FailureModes.TryParse(Environment.GetEnvironmentVariable("FAILURE_MODE"), out var mode))
{
    Console.Error.WriteLine($"error: FAILURE_MODE='{Environment.GetEnvironmentVariable("FAILURE_MODE")}' is not valid; valid values: {FailureModes.ValidValues}");
    return 2;
}

var itemDelay = TimeSpan.Zero;
if (Environment.GetEnvironmentVariable("ITEM_DELAY_MS") is { Length: > 0 } delay)
{
    if (!int.TryParse(delay, out var ms) || ms < 0 || ms > 60_000)
    {
        Console.Error.WriteLine($"error: ITEM_DELAY_MS='{delay}' is not a whole number of milliseconds between 0 and 60000");
        return 2;
    }

    itemDelay = TimeSpan.FromMilliseconds(ms);
}

// Check the runtime's environment up front: a bad value is one clear line and exit code 2, not a
// host start-up failure with a stack trace.
StoreKind store;
ExampleTelemetry telemetry;
try
{
    telemetry = ExampleTelemetry.FromEnvironment();
    var runtimeOptions = new RuntimeOptions().ApplyEnvironment();
    runtimeOptions.Validate();
    RequestMigration.Transport.TransportKinds.EnsureSupported(runtimeOptions.Transport);
    store = runtimeOptions.Discovery.Store;
    new RequestMigration.Routing.RouterOptions().ApplyEnvironment().Validate();
    new ServerOptions().ApplyEnvironment().Validate();
}
catch (Exception ex) when (ex is ArgumentException or PlatformNotSupportedException)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}

var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddSerilog((_, lc) => lc
    .ReadFrom.Configuration(builder.Configuration)
    .Enrich.FromLogContext()
    .Enrich.WithProperty("server.name", serverName)
    // An unavailable store at start-up is reported below as one line; the host's own report of it carries a stack trace.
    .Filter.ByExcluding(e => e.Level == LogEventLevel.Error && e.Exception is StoreUnavailableException && Matching.FromSource("Microsoft.Extensions.Hosting")(e))
    .WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Message:lj}{NewLine}{Exception}"));
builder.Services.AddRequestMigration(builder.Configuration);

// Traces and metrics to DYN_OTEL_EXPORTER and/or a Prometheus scrape endpoint (DYN_METRICS_PROMETHEUS_PORT);
// the runtime's meter comes from the host's IMeterFactory.
telemetry.AddTo(builder.Services, "Examples.Server");
builder.Services.AddSingleton(sp => new GenerateHandler(serverName, mode, itemDelay, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<GenerateHandler>>()));
builder.Services.AddRequestMigrationEndpoint<string, string>(
    Endpoints.Generate,
    sp => sp.GetRequiredService<GenerateHandler>().HandleAsync,
    new Dictionary<string, string> { ["server_name"] = serverName });

try
{
    using var host = builder.Build();
    telemetry.Start(host.Services);
    host.Services.GetRequiredService<ILogger<GenerateHandler>>().LogInformation("Server initialized: name={ServerName}, failure_mode={FailureMode}", serverName, mode.Describe());
    await host.RunAsync();
    return 0;
}
catch (Exception ex) when (ex is ArgumentException or Microsoft.Extensions.Options.OptionsValidationException or FileNotFoundException or PlatformNotSupportedException)
{
    // Configuration problems: one clear line, no stack trace.
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}
catch (StoreUnavailableException ex)
{
    // The discovery store stayed unavailable for the whole start-up timeout: say where and what to do, no stack trace.
    var hint = store switch
    {
        StoreKind.Etcd => "Start etcd there, or point ETCD_ENDPOINTS at a running etcd (DYN_STORE_KV=file needs no etcd).",
        StoreKind.File => "Check that DYN_FILE_KV names a directory this user can write.",
        _ => string.Empty,
    };
    Console.Error.WriteLine($"error: cannot register with the discovery store: {ex.Message}. {hint}".TrimEnd());
    return 1;
}
catch (Exception ex)
{
    Console.Error.WriteLine($"error: server failed: {ex.Message}");
    return 1;
}

internal static class Endpoints
{
    /// <summary>The example's endpoint: namespace <c>demo</c>, component <c>backend</c>, endpoint <c>generate</c>.</summary>
    public const string Generate = "demo/backend/generate";
}
