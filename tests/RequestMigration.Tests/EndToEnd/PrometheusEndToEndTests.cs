using System.Globalization;
using System.Text.RegularExpressions;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>
/// The example server and client with <c>DYN_METRICS_PROMETHEUS_PORT</c> (issue 12, "Examples wired to
/// OpenTelemetry"): each serves its metrics over HTTP on loopback, scraped here as Prometheus would.
/// </summary>
[Collection(EndToEndCollection.Name)]
public sealed partial class PrometheusEndToEndTests : IAsyncLifetime
{
    private readonly ExampleHarness _harness = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _harness.DisposeAsync();

    [Fact]
    public async Task The_example_server_and_client_serve_router_and_server_metrics_to_Prometheus()
    {
        var serverPort = Transport.TransportConformanceTests.FreePort();
        var clientPort = Transport.TransportConformanceTests.FreePort();

        // Items 500 ms apart (11 of them) keep the short-lived client streaming while both are scraped.
        var (server, _) = await _harness.StartServerAsync("server1", "never", new Dictionary<string, string>
        {
            ["DYN_METRICS_PROMETHEUS_PORT"] = serverPort.ToString(CultureInfo.InvariantCulture),
            ["ITEM_DELAY_MS"] = "500",
        });
        var client = _harness.LaunchClient(new Dictionary<string, string> { ["DYN_METRICS_PROMETHEUS_PORT"] = clientPort.ToString(CultureInfo.InvariantCulture) });
        await client.WaitForLineAsync("from server: server1", TimeSpan.FromSeconds(30));

        // The router, mid-call: one stream in flight, its first item already timed.
        var routerMetrics = await ScrapeAsync(clientPort);
        Value(routerMetrics, "request_migration_router_active_streams").ShouldBe(1, routerMetrics);
        Value(routerMetrics, "request_migration_router_time_to_first_item_seconds_count").ShouldBe(1, routerMetrics);
        routerMetrics.ShouldContain("request_migration_endpoint=\"demo/backend/generate\"");

        // The server, serving it.
        var serverMetrics = await ScrapeAsync(serverPort);
        Value(serverMetrics, "request_migration_server_requests_total").ShouldBe(1, serverMetrics);
        Value(serverMetrics, "request_migration_server_active_streams").ShouldBe(1, serverMetrics);
        serverMetrics.ShouldContain("network_transport=\"tcp\"");

        (await client.WaitForExitAsync(TimeSpan.FromSeconds(30))).ShouldBe(0, _harness.DescribeAll());
        client.Stdout.ShouldContain("=== Success! ===");
        server.HasExited.ShouldBeFalse(server.Describe());
    }

    [Theory]
    [InlineData("server", "DYN_OTEL_EXPORTER", "jaeger", "DYN_OTEL_EXPORTER='jaeger' is not valid; valid values: console, otlp, none")]
    [InlineData("client", "DYN_METRICS_PROMETHEUS_PORT", "99999", "DYN_METRICS_PROMETHEUS_PORT='99999' is not a port number between 1 and 65535")]
    [InlineData("connection-swap", "DYN_OTEL_EXPORTER", "jaeger", "DYN_OTEL_EXPORTER='jaeger' is not valid; valid values: console, otlp, none")]
    [InlineData("server", "DYN_METRICS_PROMETHEUS_PORT", "taken", "set DYN_METRICS_PROMETHEUS_PORT to a free port")]
    public async Task A_bad_telemetry_setting_is_one_line_naming_the_variable_and_exit_code_2(string program, string variable, string value, string message)
    {
        // A port something else listens on, for the "taken" case.
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var env = new Dictionary<string, string> { [variable] = value == "taken" ? ((System.Net.IPEndPoint)taken.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture) : value };
        await using var swap = program == "connection-swap" ? ChildProcess.Start("swap-client", ExampleHarness.ConnectionSwapDll, env.Concat(_harness.BaseEnvironment()).ToDictionary(), arguments: ["client"]) : null;
        var process = swap ?? (program == "server" ? _harness.LaunchServer("server1", "never", env) : _harness.LaunchClient(env));

        var code = await process.WaitForExitAsync(TimeSpan.FromSeconds(30));

        var context = process.Describe();
        code.ShouldBe(2, context);
        process.Stderr.ShouldContain($"error: ", Case.Sensitive, context);
        process.Stderr.ShouldContain(message, Case.Sensitive, context);
        (process.Stdout + process.Stderr).ShouldNotContain("   at ", Case.Sensitive, $"no stack trace; {context}");
        _harness.InstanceFiles().ShouldBeEmpty(context);
    }

    /// <summary>GETs <c>/metrics</c> on loopback, the only address the examples listen on for it.</summary>
    private static async Task<string> ScrapeAsync(int port)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{port}/metrics"), TestContext.Current.CancellationToken);
        response.EnsureSuccessStatusCode();
        response.Content.Headers.ContentType?.MediaType.ShouldBe("text/plain");
        return await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>The value of the one series of <paramref name="metric"/> in a Prometheus text exposition.</summary>
    private static double Value(string exposition, string metric)
    {
        var values = SeriesPattern().Matches(exposition).Where(m => m.Groups["name"].Value == metric).Select(m => double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture)).ToList();
        values.Count.ShouldBe(1, $"one series of {metric} in:\n{exposition}");
        return values[0];
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (?<value>\S+)", RegexOptions.Multiline)]
    private static partial Regex SeriesPattern();
}
