using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Hosting;
using RequestMigration.Tests.BadInput;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Transport;

/// <summary>The development CA in certs/ has a published key: using it outside Development is never silent (issue 8).</summary>
public sealed class DevelopmentCaTests
{
    private static readonly string CaPath = Path.Combine(RawConnection.CertsDir, "ca.pem");

    [Theory]
    [InlineData("Production")]
    [InlineData("Staging")]
    public async Task Loading_the_committed_development_CA_outside_Development_warns_naming_the_file(string environment)
    {
        var logs = await LoadCaAsync(o => o.EnvironmentName = environment);

        var warning = logs.Entries.SingleOrDefault(e => e.Message.Contains("development CA", StringComparison.Ordinal));
        warning.Message.ShouldNotBeNull(logs.Dump());
        warning.Level.ShouldBe(LogLevel.Warning);
        warning.Message.ShouldContain(CaPath);
        warning.Message.ShouldContain($"'{environment}'");
        warning.Message.ShouldContain("DYN_TLS_CA_FILE");
    }

    [Fact]
    public async Task In_Development_the_development_CA_loads_quietly()
    {
        var logs = await LoadCaAsync(o => o.EnvironmentName = "Development");

        logs.Entries.ShouldNotContain(e => e.Level >= LogLevel.Warning, logs.Dump());
    }

    [Fact]
    public void The_environment_comes_from_DOTNET_ENVIRONMENT_then_ASPNETCORE_ENVIRONMENT_and_is_Production_by_default()
    {
        RuntimeOptions.ResolveEnvironmentName(null, _ => null).ShouldBe("Production");
        RuntimeOptions.ResolveEnvironmentName(null, n => n == "ASPNETCORE_ENVIRONMENT" ? "Staging" : null).ShouldBe("Staging");
        RuntimeOptions.ResolveEnvironmentName(null, n => n switch { "DOTNET_ENVIRONMENT" => "Development", "ASPNETCORE_ENVIRONMENT" => "Staging", _ => null }).ShouldBe("Development");
        RuntimeOptions.ResolveEnvironmentName("Test", _ => "Development").ShouldBe("Test");
    }

    [Fact]
    public void A_hosted_runtime_takes_the_hosts_environment()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { EnvironmentName = "Staging" });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["DYN_STORE_KV"] = "mem" });
        builder.Services.AddRequestMigration(builder.Configuration);
        using var host = builder.Build();

        host.Services.GetRequiredService<RequestMigrationRuntime>().Options.EnvironmentName.ShouldBe("Staging");
    }

    private static async Task<CapturedLogs> LoadCaAsync(Action<RuntimeOptions> configure)
    {
        var logs = new CapturedLogs();
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Debug));
        var options = new RuntimeOptions { Discovery = new DiscoveryOptions { Store = StoreKind.Mem }, Transport = TransportKind.Tcp };
        options.Tls.CaCertificateFile = CaPath;
        configure(options);
        await using var runtime = new RequestMigrationRuntime(options, loggerFactory);

        // A router loads the CA where it is created.
        runtime.CreateRouter<string, string>(EndpointId.Parse("test/devca/generate"));
        return logs;
    }
}
