using System.Globalization;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using RequestMigration.Diagnostics;

namespace RequestMigration.Examples;

/// <summary>Where <c>DYN_OTEL_EXPORTER</c> sends traces and metrics.</summary>
internal enum TelemetryExporter
{
    /// <summary>Nowhere (the default).</summary>
    None,

    /// <summary>Standard output: spans as they end, metrics every <c>OTEL_METRIC_EXPORT_INTERVAL</c> ms (60 s) and at exit.</summary>
    Console,

    /// <summary>An OTLP collector at <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (http://localhost:4317 by default).</summary>
    Otlp,
}

/// <summary>
/// OpenTelemetry for the example programs, chosen by environment and switched on through
/// <c>OpenTelemetry.Extensions.Hosting</c>: the runtime's activity source and meter (both <c>RequestMigration</c>)
/// go to the exporter <c>DYN_OTEL_EXPORTER</c> names, and <c>DYN_METRICS_PROMETHEUS_PORT</c> serves the metrics
/// at <c>http://127.0.0.1:PORT/metrics</c> (the Prometheus exporter's HttpListener, loopback only).
/// </summary>
/// <param name="Exporter">The exporter of traces and metrics.</param>
/// <param name="PrometheusPort">The Prometheus scrape port; null for none.</param>
internal sealed record ExampleTelemetry(TelemetryExporter Exporter, int? PrometheusPort)
{
    public const string ExporterVariable = "DYN_OTEL_EXPORTER";
    public const string PrometheusPortVariable = "DYN_METRICS_PROMETHEUS_PORT";

    /// <summary>Whether anything is exported (otherwise OpenTelemetry is not set up at all).</summary>
    public bool Enabled => Exporter != TelemetryExporter.None || PrometheusPort is not null;

    /// <summary>Reads <c>DYN_OTEL_EXPORTER</c> and <c>DYN_METRICS_PROMETHEUS_PORT</c>.</summary>
    /// <exception cref="ArgumentException">A value is invalid; the message names the variable and what it accepts.</exception>
    public static ExampleTelemetry FromEnvironment(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        var exporter = environment(ExporterVariable)?.Trim().ToLowerInvariant() switch
        {
            null or "" or "none" => TelemetryExporter.None,
            "console" => TelemetryExporter.Console,
            "otlp" => TelemetryExporter.Otlp,
            _ => throw new ArgumentException($"{ExporterVariable}='{environment(ExporterVariable)}' is not valid; valid values: console, otlp, none"),
        };

        int? port = null;
        if (environment(PrometheusPortVariable) is { } text && !string.IsNullOrWhiteSpace(text))
        {
            port = int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is >= 1 and <= 65535
                ? p
                : throw new ArgumentException($"{PrometheusPortVariable}='{text}' is not a port number between 1 and 65535");
        }

        return new ExampleTelemetry(exporter, port);
    }

    /// <summary>
    /// Registers an <see cref="System.Diagnostics.Metrics.IMeterFactory"/> (for the runtime) and, when enabled,
    /// OpenTelemetry's tracer and meter providers. A host starts them; a program without one calls
    /// <see cref="StartWithoutHost"/>.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="serviceName">The <c>service.name</c> resource attribute.</param>
    public IServiceCollection AddTo(IServiceCollection services, string serviceName)
    {
        services.AddMetrics();
        if (!Enabled)
        {
            return services;
        }

        var otel = services.AddOpenTelemetry().ConfigureResource(r => r.AddService(serviceName));
        if (Exporter != TelemetryExporter.None)
        {
            otel.WithTracing(tracing =>
            {
                tracing.AddSource(RuntimeTelemetry.SourceName);
                _ = Exporter == TelemetryExporter.Console ? tracing.AddConsoleExporter() : tracing.AddOtlpExporter();
            });
        }

        otel.WithMetrics(metrics =>
        {
            metrics.AddMeter(RuntimeMetrics.MeterName);
            if (Exporter == TelemetryExporter.Console)
            {
                metrics.AddConsoleExporter();
            }
            else if (Exporter == TelemetryExporter.Otlp)
            {
                metrics.AddOtlpExporter();
            }

            if (PrometheusPort is { } port)
            {
                metrics.AddPrometheusHttpListener(o =>
                {
                    // Loopback only: the scrape endpoint has no authentication.
                    o.Host = "127.0.0.1";
                    o.Port = port;
                });
            }
        });
        return services;
    }

    /// <summary>
    /// Builds the providers now rather than when the host starts, so a Prometheus port that cannot be listened
    /// on is one line naming the variable instead of a host start-up failure with a stack trace.
    /// </summary>
    /// <exception cref="ArgumentException">The Prometheus port is taken (or not ours to use).</exception>
    public void Start(IServiceProvider services)
    {
        try
        {
            _ = services.GetService<TracerProvider>();
            _ = services.GetService<MeterProvider>();
        }
        catch (InvalidOperationException ex) when (ex.InnerException is HttpListenerException listener)
        {
            throw new ArgumentException($"cannot serve Prometheus metrics on 127.0.0.1:{PrometheusPort} ({listener.Message}); set {PrometheusPortVariable} to a free port", ex);
        }
    }

    /// <summary>
    /// For programs without a host: builds the providers now (so the Prometheus listener is up and nothing
    /// recorded from here on is missed). Disposing the returned container flushes what is pending: dispose it
    /// after the runtimes, before exiting.
    /// </summary>
    /// <param name="serviceName">The <c>service.name</c> resource attribute.</param>
    /// <exception cref="ArgumentException">The Prometheus port is taken.</exception>
    public ServiceProvider StartWithoutHost(string serviceName)
    {
        var services = AddTo(new ServiceCollection(), serviceName).BuildServiceProvider();
        try
        {
            Start(services);
            return services;
        }
        catch
        {
            services.Dispose();
            throw;
        }
    }
}
