using Microsoft.Extensions.DependencyInjection;
using RequestMigration;
using RequestMigration.Examples;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using Serilog;
using Serilog.Events;
using Serilog.Extensions.Logging;

// The request-migration example client: sends "hello world" through a PushRouter and prints every
// attempt the way the original example does. Items go to stdout, logs to stderr.
var level = Environment.GetEnvironmentVariable("CLIENT_LOG_LEVEL") is { Length: > 0 } l && Enum.TryParse<LogEventLevel>(l, true, out var parsed) ? parsed : LogEventLevel.Warning;
using var serilog = new LoggerConfiguration()
    .MinimumLevel.Is(level)
    .Enrich.FromLogContext()
    .WriteTo.Console(standardErrorFromLevel: LogEventLevel.Verbose, outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Message:lj}{NewLine}{Exception}")
    .CreateLogger();
using var loggerFactory = new SerilogLoggerFactory(serilog);

RuntimeOptions options;
RouterOptions routerOptions;
TimeSpan wait;
ExampleTelemetry telemetry;
try
{
    telemetry = ExampleTelemetry.FromEnvironment();
    options = new RuntimeOptions().ApplyEnvironment();
    routerOptions = new RouterOptions().ApplyEnvironment();
    wait = Environment.GetEnvironmentVariable("CLIENT_WAIT_SECS") is { Length: > 0 } w
        ? ClientSettings.ParseSeconds("CLIENT_WAIT_SECS", w)
        : TimeSpan.FromSeconds(10);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}

var input = Environment.GetEnvironmentVariable("CLIENT_INPUT") is { Length: > 0 } i ? i : "hello world";
using var cts = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cts.Cancel();
};

ServiceProvider started;
try
{
    started = telemetry.StartWithoutHost("Examples.Client");
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}

// Declared before the runtime, so it is disposed after it: the call's last measurements are recorded by then,
// and disposing the providers exports them before this short-lived process exits.
await using var services = started;
await using var runtime = new RequestMigrationRuntime(options, loggerFactory, meterFactory: services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
PushRouter<string, string> created;
try
{
    // Unknown policy names and missing certificates are this client's configuration: one line, exit code 2.
    created = runtime.CreateRouter<string, string>(EndpointId.Parse("demo/backend/generate"), routerOptions);
}
catch (Exception ex) when (ex is ArgumentException or FileNotFoundException)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}

await using var router = created;
try
{
    await router.WaitForInstancesAsync(wait, cts.Token);
    var attempt = 1;
    var retryPending = false;
    Console.WriteLine($"=== Attempt {attempt} ===");
    await foreach (var item in router.GenerateAsync(input, cts.Token))
    {
        if (retryPending)
        {
            // Printed only once the next attempt has really started, so the last failure is not followed by it.
            Console.WriteLine("Retrying request...");
            Console.WriteLine();
            Console.WriteLine($"=== Attempt {++attempt} ===");
            retryPending = false;
        }

        if (item.IsError)
        {
            Console.WriteLine($"Error: {item.Comment}");
            retryPending = true;
            continue;
        }

        Console.WriteLine(item);
    }

    Console.WriteLine();
    Console.WriteLine("=== Success! ===");
    return 0;
}
catch (RoutingException ex)
{
    Console.WriteLine(ex.Message);
    return 1;
}
catch (TimeoutException ex)
{
    Console.WriteLine(ex.Message);
    return 1;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("cancelled");
    return 130;
}

internal static class ClientSettings
{
    public static TimeSpan ParseSeconds(string name, string value) =>
        double.TryParse(value.Trim(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s) && s >= 0 && s <= 86_400
            ? TimeSpan.FromSeconds(s)
            : throw new ArgumentException($"{name}='{value}' is not a number of seconds between 0 and 86400", name);
}
