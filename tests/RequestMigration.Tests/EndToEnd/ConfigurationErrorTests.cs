using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>Invalid settings make the example programs exit at once with a message naming the variable.</summary>
[Collection(EndToEndCollection.Name)]
public sealed class ConfigurationErrorTests : IAsyncLifetime
{
    private readonly ExampleHarness _harness = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _harness.DisposeAsync();

    [Fact]
    public async Task Server_with_an_invalid_failure_mode_exits_with_code_2_listing_the_valid_modes()
    {
        var server = _harness.LaunchServer("server1", "sometimes");

        var code = await server.WaitForExitAsync(TimeSpan.FromSeconds(15));

        var context = server.Describe();
        code.ShouldBe(2, context);
        server.Stderr.ShouldContain("FAILURE_MODE='sometimes'", Case.Sensitive, context);
        server.Stderr.ShouldContain("never, first, always", Case.Sensitive, context);
        server.Stdout.ShouldNotContain(ExampleHarness.ServingLine, Case.Sensitive, context);
        _harness.InstanceFiles().ShouldBeEmpty(context);
    }

    [Fact]
    public async Task Server_with_an_unknown_store_exits_non_zero_listing_the_valid_stores()
    {
        var server = _harness.LaunchServer("server1", "never", new Dictionary<string, string> { ["DYN_STORE_KV"] = "redis" });

        var code = await server.WaitForExitAsync(TimeSpan.FromSeconds(15));

        var context = server.Describe();
        code.ShouldNotBe(0, context);
        code.ShouldBe(2, $"configuration errors exit with 2; {context}");
        server.Stderr.ShouldContain("DYN_STORE_KV='redis'", Case.Sensitive, context);
        server.Stderr.ShouldContain("file, mem, etcd", Case.Sensitive, context);
        server.Stdout.ShouldNotContain(ExampleHarness.ServingLine, Case.Sensitive, context);
        _harness.InstanceFiles().ShouldBeEmpty(context);
    }

    [Fact]
    public async Task Server_with_an_unknown_store_reports_it_without_a_stack_trace()
    {
        var server = _harness.LaunchServer("server1", "never", new Dictionary<string, string> { ["DYN_STORE_KV"] = "redis" });

        var code = await server.WaitForExitAsync(TimeSpan.FromSeconds(15));

        var context = server.Describe();
        code.ShouldBe(2, context);
        var traceLines = server.StdoutLines.Concat(server.Stderr.Split('\n')).Count(l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        traceLines.ShouldBe(
            0,
            "a configuration error must be one clear line and exit code 2, not a host start-up failure with a stack trace "
            + "(src/Examples.Server/Program.cs validates the DYN_* variables before building the host); "
            + $"output:\n{context}");
        server.Stdout.ShouldNotContain("Hosting failed to start", Case.Sensitive, context);
    }

    [Fact]
    public async Task Client_with_an_unknown_store_exits_with_code_2_listing_the_valid_stores()
    {
        var client = _harness.LaunchClient(new Dictionary<string, string> { ["DYN_STORE_KV"] = "redis" });

        var code = await client.WaitForExitAsync(TimeSpan.FromSeconds(15));

        var context = client.Describe();
        code.ShouldBe(2, context);
        client.Stderr.ShouldContain("DYN_STORE_KV='redis'", Case.Sensitive, context);
        client.Stderr.ShouldContain("file, mem, etcd", Case.Sensitive, context);
        client.Stdout.ShouldNotContain("=== Attempt", Case.Sensitive, context);
    }

    [Theory]
    [InlineData("server", "DYN_INSTANCE_TAGS", "role", "DYN_INSTANCE_TAGS: 'role' is not key=value")]
    [InlineData("server", "DYN_INSTANCE_TAGS", "role=a,role=b", "DYN_INSTANCE_TAGS: key 'role' appears more than once")]
    [InlineData("client", "DYN_ROUTER_FILTER", "=worker", "DYN_ROUTER_FILTER: '=worker' has an empty key")]
    [InlineData("client", "DYN_LB_POLICY", "fastest", "load-balancing policy 'fastest' (RouterOptions.LoadBalancingPolicy, DYN_LB_POLICY) is not known; valid: RoundRobin, Random, LeastConnections, PowerOfTwoChoices")]
    [InlineData("client", "CLIENT_WAIT_SECS", "abc", "CLIENT_WAIT_SECS='abc' is not a number of seconds")]
    [InlineData("client", "DYN_HEARTBEAT_DETECTOR", "magic", "DYN_HEARTBEAT_DETECTOR='magic' is not a heartbeat detector; valid: misses, phi")]
    public async Task Malformed_cluster_settings_exit_with_code_2_naming_the_bad_part(string program, string variable, string value, string expected)
    {
        var env = new Dictionary<string, string> { [variable] = value, ["DYN_HEARTBEAT"] = "true" };
        var process = program == "server" ? _harness.LaunchServer("server1", "never", env) : _harness.LaunchClient(env);
        var code = await process.WaitForExitAsync(TimeSpan.FromSeconds(15));

        var context = process.Describe();
        code.ShouldBe(2, context);
        process.Stderr.ShouldContain(expected, Case.Sensitive, context);
        process.Stderr.ShouldNotContain("   at ", Case.Sensitive, $"no stack trace; {context}");
    }

    [Fact]
    public async Task The_example_client_routes_only_to_instances_matching_its_filter()
    {
        await _harness.StartServerAsync("worker", "never", new Dictionary<string, string> { ["DYN_INSTANCE_TAGS"] = "role=worker,label=worker-a" });
        await _harness.StartServerAsync("director", "always", new Dictionary<string, string> { ["DYN_INSTANCE_TAGS"] = "role=director" });
        _harness.InstanceFiles().Select(File.ReadAllText).ShouldContain(r => r.Contains("\"tags\":{\"label\":\"worker-a\",\"role\":\"worker\"}", StringComparison.Ordinal));

        for (var run = 0; run < 4; run++)
        {
            var client = await _harness.RunClientAsync(new Dictionary<string, string> { ["DYN_ROUTER_FILTER"] = "role=worker" });
            var t = ClientTranscript.Parse(client.StdoutLines);
            client.ExitCode.ShouldBe(0, client.Describe());
            t.Attempts.ShouldHaveSingleItem(client.Describe()).Servers.ShouldBe(["worker"], client.Describe());
        }
    }
}
