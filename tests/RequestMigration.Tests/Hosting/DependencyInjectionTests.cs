using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using RequestMigration.Hosting;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Hosting;

/// <summary>
/// Several routers of one type pair in one container, and containers disposed synchronously (issue 8,
/// "Router pools and DI").
/// </summary>
public sealed class DependencyInjectionTests
{
    private static readonly Dictionary<string, string?> MemStore = new()
    {
        ["DYN_STORE_KV"] = "mem",
        ["RequestMigration:Transport"] = "Tcp",
        ["RequestMigration:DeregistrationGracePeriod"] = "00:00:00",
    };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Two_routers_with_the_same_types_and_different_endpoints_both_work_resolved_by_endpoint()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(MemStore);
        builder.Services.AddRequestMigration(builder.Configuration);
        builder.Services.AddRequestMigrationEndpoint<string, string>("app/echo/upper", _ => (s, _) => Map(s, char.ToUpperInvariant));
        builder.Services.AddRequestMigrationEndpoint<string, string>("app/echo/lower", _ => (s, _) => Map(s, char.ToLowerInvariant));
        builder.Services.AddPushRouter<string, string>("app/echo/upper");
        builder.Services.AddPushRouter<string, string>("app/echo/lower", o => o.MaxAttempts = 2);
        using var host = builder.Build();
        await host.StartAsync(Ct);

        var upper = host.Services.GetRequiredKeyedService<PushRouter<string, string>>("app/echo/upper");
        var lower = host.Services.GetRequiredKeyedService<PushRouter<string, string>>("app/echo/lower");

        upper.Endpoint.Path.ShouldBe("app/echo/upper");
        lower.Endpoint.Path.ShouldBe("app/echo/lower");
        await upper.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);
        await lower.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);
        (await TransportConformanceTests.Collect(upper.GenerateAsync("aB", Ct))).Select(i => i.Data).ShouldBe(["A", "B"]);
        (await TransportConformanceTests.Collect(lower.GenerateAsync("aB", Ct))).Select(i => i.Data).ShouldBe(["a", "b"]);

        // Without a key the choice would be a guess: say how to choose instead.
        var ex = Should.Throw<InvalidOperationException>(() => host.Services.GetRequiredService<PushRouter<string, string>>());
        ex.Message.ShouldContain("app/echo/upper");
        ex.Message.ShouldContain("app/echo/lower");
        ex.Message.ShouldContain("GetRequiredKeyedService");
        await host.StopAsync(Ct);
    }

    [Fact]
    public void One_router_of_a_type_pair_resolves_with_or_without_its_key()
    {
        var services = new ServiceCollection();
        services.AddRequestMigration(new ConfigurationBuilder().AddInMemoryCollection(MemStore).Build());
        services.AddPushRouter<string, string>("app/echo/upper");
        using var provider = services.BuildServiceProvider();

        provider.GetRequiredService<PushRouter<string, string>>().ShouldBeSameAs(provider.GetRequiredKeyedService<PushRouter<string, string>>("app/echo/upper"));
    }

    [Fact]
    public void The_same_endpoint_and_types_twice_is_refused_at_registration()
    {
        var services = new ServiceCollection();
        services.AddPushRouter<string, string>("app/echo/upper");

        var ex = Should.Throw<InvalidOperationException>(() => services.AddPushRouter<string, string>("app/echo/upper"));

        ex.Message.ShouldContain("app/echo/upper");
    }

    [Fact]
    public void A_container_holding_a_runtime_a_router_and_a_server_can_be_disposed_synchronously()
    {
        var services = new ServiceCollection();
        services.AddRequestMigration(new ConfigurationBuilder().AddInMemoryCollection(MemStore).Build());
        services.AddPushRouter<string, string>("app/echo/upper");
        services.AddSingleton(sp => sp.GetRequiredService<RequestMigrationRuntime>().CreateServer());
        var provider = services.BuildServiceProvider();
        provider.GetRequiredService<PushRouter<string, string>>();
        provider.GetRequiredService<EndpointServer>();

        // Microsoft.Extensions.DependencyInjection refuses to dispose synchronously what is only IAsyncDisposable.
        Should.NotThrow(provider.Dispose);
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Map(string s, Func<char, char> map)
    {
        foreach (var c in s)
        {
            yield return map(c).ToString();
        }
    }
#pragma warning restore CS1998
}
