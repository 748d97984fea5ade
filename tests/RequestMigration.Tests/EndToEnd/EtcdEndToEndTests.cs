using System.Diagnostics;
using System.Globalization;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Tests.Etcd;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>The example processes on a real etcd (the test's own, on free ports).</summary>
[Collection(EtcdOutageCollection.Name)]
public sealed class EtcdEndToEndTests(EtcdFixture etcd) : IAsyncLifetime
{
    private readonly ExampleHarness _harness = new();

    private Dictionary<string, string> EtcdEnv => new()
    {
        ["DYN_STORE_KV"] = "etcd",
        ["ETCD_ENDPOINTS"] = etcd.ClientUrl.ToString().TrimEnd('/'),
    };

    public async ValueTask InitializeAsync()
    {
        await etcd.StartAsync();
        await ClearDemoInstancesAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await _harness.DisposeAsync();

        // A SIGKILLed server's record lives until its lease expires; don't hand it to the next test.
        await ClearDemoInstancesAsync();
    }

    private async Task ClearDemoInstancesAsync()
    {
        await using var store = new RequestMigration.Discovery.Etcd.EtcdKeyValueStore(etcd.Options());
        foreach (var e in (await store.ListAsync(InstanceKeys.Prefix(EndpointId.Parse(ExampleHarness.Endpoint)))).Concat(await store.ListAsync("v1/instances/connection-swap/")))
        {
            await store.DeleteAsync(e.Key);
        }
    }

    [Fact]
    public async Task Two_connection_swap_directors_on_etcd_kill_9_of_the_one_in_use_continues_the_session_on_the_other()
    {
        await using var swap = new ConnectionSwap.SwapCluster();
        var d1 = await swap.StartDirectorAsync("director-1", EtcdEnv);
        var d2 = await swap.StartDirectorAsync("director-2", EtcdEnv);
        var workerEnv = new Dictionary<string, string>(EtcdEnv) { ["CONNECTION_SWAP_FAILURE_ENABLED"] = "false" };
        await Task.WhenAll(swap.StartWorkerAsync("worker-a", [d1, d2], workerEnv), swap.StartWorkerAsync("worker-b", [d1, d2], workerEnv));

        // The client finds both directors through etcd (no CONNECTION_SWAP_DIRECTOR_TARGET).
        var client = swap.LaunchClient("director", 40, EtcdEnv);
        await ConnectionSwap.SwapCluster.WaitForTokensAsync(client, 15, TimeSpan.FromSeconds(60));
        var inUse = ConnectionSwap.Transcript.Parse(client).Lines.Single(l => l.Contains("streaming through director", StringComparison.Ordinal));
        var (victim, survivor) = inUse.Contains("director=director-1 ", StringComparison.Ordinal) ? (d1, d2) : (d2, d1);
        await victim.Process.KillHardAsync();

        (await client.WaitForExitAsync(TimeSpan.FromSeconds(60))).ShouldBe(0, swap.DescribeAll());
        var transcript = ConnectionSwap.Transcript.Parse(client);
        transcript.ShouldBeGaplessAndDuplicateFree(40, swap.DescribeAll());
        transcript.Count($"from_director={victim.Label} to_director={survivor.Label}").ShouldBe(1, swap.DescribeAll());
        survivor.Process.Stdout.ShouldContain("client opened stream (from sequence=");
    }

    [Fact]
    public async Task The_seed_demo_fails_over_on_etcd()
    {
        var servers = await Task.WhenAll(
            _harness.StartServerAsync("server1", "always", EtcdEnv),
            _harness.StartServerAsync("server2", "never", EtcdEnv));
        var failovers = 0;
        var runs = 0;
        var outputs = new System.Text.StringBuilder();
        while (runs < 10 && (runs < 3 || failovers == 0))
        {
            var client = await _harness.RunClientAsync(EtcdEnv);
            runs++;
            outputs.Append(client.Describe());
            client.ExitCode.ShouldBe(0, client.Describe());
            var t = ClientTranscript.Parse(client.StdoutLines);
            t.Success.ShouldBeTrue(client.Describe());
            t.Attempts[^1].Servers.ShouldBe(["server2"], client.Describe());
            t.Attempts[^1].Text.ShouldBe("hello world", client.Describe());
            if (t.Attempts.Count == 2)
            {
                t.Attempts[0].Items.ShouldBe([("server1", "h"), ("server1", "e")], client.Describe());
                t.Attempts[0].Errors.ShouldBe(["Stream ended before generation completed"], client.Describe());
                failovers++;
            }
        }

        failovers.ShouldBeGreaterThan(0, $"no run took the failover path:\n{outputs}");

        // On etcd the instance id is the lease id: the registered key is bound to that lease.
        await using var store = new RequestMigration.Discovery.Etcd.EtcdKeyValueStore(etcd.Options());
        var id = ulong.Parse(servers[0].InstanceId, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var entry = await store.GetAsync(InstanceKeys.Key(EndpointId.Parse(ExampleHarness.Endpoint), id), TestContext.Current.CancellationToken);
        entry.ShouldNotBeNull();
        ((ulong)entry.LeaseId).ShouldBe(id);
    }

    [Fact]
    public async Task A_server_killed_with_sigkill_disappears_from_a_running_router_within_ttl_plus_one_second()
    {
        var ct = TestContext.Current.CancellationToken;
        var (victim, victimHex) = await _harness.StartServerAsync("victim", "never", EtcdEnv);
        var (_, survivorHex) = await _harness.StartServerAsync("survivor", "never", EtcdEnv);
        var victimId = ulong.Parse(victimHex, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var survivorId = ulong.Parse(survivorHex, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

        await using var runtime = new RequestMigrationRuntime(new RuntimeOptions
        {
            Transport = TransportKind.Tcp,
            Discovery = new DiscoveryOptions { Store = StoreKind.Etcd, Etcd = etcd.Options() },
        });
        var router = runtime.CreateRouter<string, string>(EndpointId.Parse(ExampleHarness.Endpoint), new RouterOptions { InhibitDuration = TimeSpan.Zero });
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (router.Instances.Source.Count < 2 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, ct);
        }

        router.Instances.Source.Select(r => r.InstanceId).Order().ShouldBe(new[] { victimId, survivorId }.Order());

        var killedAt = Stopwatch.StartNew();
        await victim.KillHardAsync();
        var served = 0;
        while (router.Instances.Source.Any(r => r.InstanceId == victimId) && killedAt.Elapsed < TimeSpan.FromSeconds(20))
        {
            // Requests keep succeeding meanwhile: a refused connection fails over to the survivor.
            var items = await RequestMigration.Tests.Transport.TransportConformanceTests.Collect(router.GenerateAsync("ok", ct));
            items.Where(i => !i.IsError).Select(i => i.Data).ShouldBe(["from server: survivor, data: o", "from server: survivor, data: k"]);
            served++;
            await Task.Delay(100, ct);
        }

        var gone = killedAt.Elapsed;
        router.Instances.Source.Select(r => r.InstanceId).ShouldBe([survivorId]);
        gone.ShouldBeLessThanOrEqualTo(TimeSpan.FromSeconds(11), "lease TTL is 10 s: the record must vanish within TTL + 1 s");
        served.ShouldBeGreaterThan(0);
    }

    [Fact]
    public async Task A_server_that_cannot_reach_etcd_exits_with_one_line_naming_the_endpoint_and_no_stack_trace()
    {
        var port = EtcdFixture.FreePort();
        var server = _harness.LaunchServer("server1", "never", new Dictionary<string, string>
        {
            ["DYN_STORE_KV"] = "etcd",
            ["ETCD_ENDPOINTS"] = $"http://127.0.0.1:{port}",
            ["DYN_STORE_STARTUP_TIMEOUT_SECS"] = "1",
        });

        var code = await server.WaitForExitAsync(TimeSpan.FromSeconds(30));

        var context = server.Describe();
        code.ShouldNotBe(0, context);
        var output = server.StdoutLines.Concat(server.Stderr.Split('\n')).ToList();
        output.Count(l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal)).ShouldBe(0, $"no stack trace for an unreachable etcd:\n{context}");
        var errors = server.Stderr.Split('\n').Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToList();
        errors.Count.ShouldBe(1, context);
        errors[0].ShouldContain($"127.0.0.1:{port}", Case.Sensitive, context);
        errors[0].ShouldContain("ETCD_ENDPOINTS", Case.Sensitive, context);
        errors[0].ShouldContain("refused", Case.Insensitive, context);
        output.ShouldNotContain(l => l.Contains("no answer within", StringComparison.Ordinal), $"an instant refusal is not a timeout:\n{context}");
        server.Stdout.ShouldNotContain(ExampleHarness.ServingLine, Case.Sensitive, context);
    }

    [Fact]
    public async Task A_server_started_before_etcd_waits_for_it_with_one_warning_and_registers()
    {
        await etcd.StopAsync();
        var server = _harness.LaunchServer("server1", "never", EtcdEnv);
        await Task.Delay(TimeSpan.FromSeconds(2.5));
        server.HasExited.ShouldBeFalse($"the server gave up while etcd was down:\n{server.Describe()}");
        await etcd.StartAsync();

        await server.WaitForLineAsync(ExampleHarness.ServingLine, TimeSpan.FromSeconds(20));

        var context = server.Describe();
        // The harness runs in Production with the development certificates, which is warned about once on its own.
        var warnings = server.StdoutLines.Where(l => l.Contains(" WRN] ", StringComparison.Ordinal) && !l.Contains("development CA", StringComparison.Ordinal)).ToList();
        warnings.Count.ShouldBe(1, context);
        warnings[0].ShouldContain(etcd.ClientUrl.ToString().TrimEnd('/'), Case.Sensitive, context);
        server.StdoutLines.Concat(server.Stderr.Split('\n')).Count(l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal)).ShouldBe(0, context);
    }
}
