using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using RequestMigration.Hosting;
using RequestMigration.Routing;
using RequestMigration.Serving;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Hosting;

/// <summary>Embedding through Microsoft.Extensions.Hosting: a server host and a client host, configured from configuration.</summary>
public sealed class HostingTests
{
    [Fact]
    public async Task An_endpoint_and_a_router_can_be_hosted_with_a_few_lines()
    {
        var ct = TestContext.Current.CancellationToken;
        var root = Path.Combine(Path.GetTempPath(), "rm-host-" + Guid.NewGuid().ToString("N"));
        var config = new Dictionary<string, string?>
        {
            ["RequestMigration:Transport"] = "Tcp",
            ["RequestMigration:DrainTimeout"] = "00:00:02",
            ["DYN_STORE_KV"] = "file",
            ["DYN_FILE_KV"] = root,
        };
        try
        {
            var serverBuilder = Host.CreateApplicationBuilder();
            serverBuilder.Configuration.AddInMemoryCollection(config);
            serverBuilder.Services.AddRequestMigration(serverBuilder.Configuration);
            serverBuilder.Services.AddRequestMigrationEndpoint<string, string>("app/echo/upper", _ => Upper);
            using var serverHost = serverBuilder.Build();
            await serverHost.StartAsync(ct);

            var clientBuilder = Host.CreateApplicationBuilder();
            clientBuilder.Configuration.AddInMemoryCollection(config);
            clientBuilder.Services.AddRequestMigration(clientBuilder.Configuration);
            clientBuilder.Services.AddPushRouter<string, string>("app/echo/upper", o => o.MaxAttempts = 2);
            using var clientHost = clientBuilder.Build();
            await clientHost.StartAsync(ct);

            var router = clientHost.Services.GetRequiredService<PushRouter<string, string>>();
            await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), ct);
            var items = await RequestMigration.Tests.Transport.TransportConformanceTests.Collect(router.GenerateAsync("abc", ct));
            items.Select(i => i.Data).ShouldBe(["A", "B", "C"]);
            clientHost.Services.GetRequiredService<RequestMigrationRuntime>().Options.Transport.ShouldBe(RequestMigration.Transport.TransportKind.Tcp);

            await clientHost.StopAsync(ct);
            await serverHost.StopAsync(ct);
            Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).ShouldBeEmpty("a stopped server deregisters");
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void A_bad_store_in_configuration_fails_at_start_naming_it()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["DYN_STORE_KV"] = "redis" });
        builder.Services.AddRequestMigration(builder.Configuration);
        using var host = builder.Build();
        var ex = Should.Throw<ArgumentException>(() => host.Services.GetRequiredService<RequestMigrationRuntime>());
        ex.Message.ShouldContain("DYN_STORE_KV='redis'");
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Upper(string s, RequestContext ctx)
    {
        foreach (var c in s)
        {
            yield return char.ToUpperInvariant(c).ToString();
        }
    }
#pragma warning restore CS1998
}
