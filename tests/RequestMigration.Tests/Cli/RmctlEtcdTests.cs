using RequestMigration.Discovery.Etcd;
using RequestMigration.Discovery.Instances;
using RequestMigration.Tests.EndToEnd;
using RequestMigration.Tests.Etcd;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Cli;

/// <summary>rmctl against a real etcd (the shared test etcd), beside real example servers registered there.</summary>
[Collection(EtcdCollection.Name)]
public sealed class RmctlEtcdTests(EtcdFixture etcd) : IAsyncLifetime
{
    private readonly ExampleHarness _harness = new();

    /// <summary>Every process of the test: etcd, and a lease TTL short enough for a quick expiry yet far above etcd's 1 s resolution.</summary>
    private Dictionary<string, string> Env => new()
    {
        ["DYN_STORE_KV"] = "etcd",
        ["ETCD_ENDPOINTS"] = etcd.ClientUrl.ToString().TrimEnd('/'),
        ["DYN_LEASE_TTL_SECS"] = "6",
    };

    public ValueTask InitializeAsync() => ClearDemoInstancesAsync();

    public async ValueTask DisposeAsync()
    {
        await _harness.DisposeAsync();
        await ClearDemoInstancesAsync();
    }

    [Fact]
    public async Task Instances_watch_call_and_store_work_on_etcd()
    {
        await using var watch = Rmctl.Start(Env, "watch", "demo/backend/generate", "--json");
        await watch.WaitForLineAsync("\"event\":\"synced\"", TimeSpan.FromSeconds(20));
        var (graceful, _) = await _harness.StartServerAsync("server1", "never", Env);
        var (killed, _) = await _harness.StartServerAsync("server2", "never", Env);
        var g = await Rmctl.ServingAsync(graceful);
        var k = await Rmctl.ServingAsync(killed);
        await Rmctl.WaitForEventAsync(watch, "joined", g.Id);
        await Rmctl.WaitForEventAsync(watch, "joined", k.Id);

        // On etcd an instance id is its lease id, and the key is bound to that lease.
        var instances = await Rmctl.RunAsync(Env, "instances", "--json");
        instances.ExitCode.ShouldBe(0, instances.Description);
        var list = instances.Json().GetProperty("instances").EnumerateArray().ToList();
        list.Select(i => i.GetProperty("instance_id").GetString()).Order(StringComparer.Ordinal).ShouldBe(new[] { g.Id, k.Id }.Order(StringComparer.Ordinal));
        list.ShouldAllBe(i => i.GetProperty("lease").GetString() == i.GetProperty("instance_id").GetString(), instances.Description);
        list.Single(i => i.GetProperty("instance_id").GetString() == g.Id).GetProperty("address").GetString().ShouldBe(g.Address);
        var table = await Rmctl.RunAsync(Env, "instances");
        table.ExitCode.ShouldBe(0, table.Description);
        table.StdoutLines.ShouldContain(l => l.Contains(g.Id, StringComparison.Ordinal) && l.Contains(g.Address, StringComparison.Ordinal), table.Description);
        table.Stdout.ShouldContain($"2 instance(s) in etcd at {etcd.ClientUrl.ToString().TrimEnd('/')}");

        var call = await Rmctl.RunAsync(Env, "call", "demo/backend/generate", "--input", "hi", "--json", "--policy", "least-connections");
        call.ExitCode.ShouldBe(0, call.Description);
        var events = Rmctl.JsonLines(call.StdoutLines, call.Description);
        events.Select(e => e.GetProperty("event").GetString()).ShouldBe(["attempt", "item", "item", "completed"], call.Description);
        events[1].GetProperty("instance_id").GetString().ShouldBe(events[0].GetProperty("instance_id").GetString());

        await graceful.SendSigtermAsync();
        await Rmctl.WaitForEventAsync(watch, "left", g.Id);
        await killed.KillHardAsync();
        await Rmctl.WaitForEventAsync(watch, "expired", k.Id, TimeSpan.FromSeconds(15));
        var membership = Rmctl.JsonLines(watch.StdoutLines, watch.Describe());
        var left = membership.Single(e => e.GetProperty("event").GetString() == "left");
        left.GetProperty("lease").GetString().ShouldBe(g.Id);
        left.GetProperty("reason").GetString()!.ShouldStartWith("deregistered", Case.Sensitive, watch.Describe());
        var expired = membership.Single(e => e.GetProperty("event").GetString() == "expired");
        expired.GetProperty("lease").GetString().ShouldBe(k.Id);
        expired.GetProperty("reason").GetString().ShouldBe($"lease {k.Id} ran out: its owner stopped renewing it", watch.Describe());
        await Rmctl.InterruptAsync(watch);
        (await watch.WaitForExitAsync(TimeSpan.FromSeconds(5))).ShouldBe(0, watch.Describe());

        // Raw access: a write needs --yes; etcd's revisions show through.
        var key = $"rmctl-test/{Guid.NewGuid():N}";
        (await Rmctl.RunAsync(Env, "store", "put", key, "v1")).ExitCode.ShouldBe(2);
        (await Rmctl.RunAsync(Env, "store", "put", key, "v1", "--yes")).ExitCode.ShouldBe(0);
        var get = await Rmctl.RunAsync(Env, "store", "get", key, "--json");
        get.ExitCode.ShouldBe(0, get.Description);
        get.Json().GetProperty("value").GetString().ShouldBe("v1");
        get.Json().GetProperty("mod_revision").GetInt64().ShouldBeGreaterThan(0);
        (await Rmctl.RunAsync(Env, "store", "rm", key, "--yes")).ExitCode.ShouldBe(0);
        var gone = await Rmctl.RunAsync(Env, "store", "get", key);
        gone.ExitCode.ShouldBe(1, gone.Description);
        gone.Stderr.ShouldContain($"not found in etcd at {etcd.ClientUrl.ToString().TrimEnd('/')}");
    }

    private async ValueTask ClearDemoInstancesAsync()
    {
        // A killed server's record outlives it until its lease runs out; don't leave it to another test.
        await using var store = new EtcdKeyValueStore(etcd.Options());
        foreach (var e in await store.ListAsync(InstanceKeys.Prefix(EndpointId.Parse(ExampleHarness.Endpoint))))
        {
            await store.DeleteAsync(e.Key);
        }
    }
}
