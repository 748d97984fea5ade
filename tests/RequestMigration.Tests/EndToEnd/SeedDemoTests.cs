using System.Text;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>The seed demo (request migration with one always-failing server), as real processes.</summary>
[Collection(EndToEndCollection.Name)]
public sealed class SeedDemoTests : IAsyncLifetime
{
    private const string StreamIncomplete = "Stream ended before generation completed";
    private readonly ExampleHarness _harness = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _harness.DisposeAsync();

    [Theory]
    [InlineData("tcp")]
    [InlineData("quic")]
    public async Task Client_fails_over_from_the_always_failing_server_to_the_healthy_one(string transport)
    {
        Assert.SkipWhen(transport == "quic" && !RequestMigration.Transport.TransportKinds.IsQuicSupported, "QUIC skipped: libmsquic is not installed here; the same demo runs over TCP.");
        var env = new Dictionary<string, string> { ["DYN_TRANSPORT"] = transport };
        var servers = await Task.WhenAll(
            _harness.StartServerAsync("server1", "always", env),
            _harness.StartServerAsync("server2", "never", env));
        var server1 = servers[0].Process;

        // Each client process starts round robin at a random offset: run until the failover path
        // (server1 first) has been seen, at least 4 and at most 10 times.
        var outputs = new StringBuilder();
        var runs = 0;
        var failovers = 0;
        var direct = 0;
        while (runs < 10 && (runs < 4 || failovers == 0))
        {
            var client = await _harness.RunClientAsync();
            runs++;
            outputs.Append(client.Describe());
            var context = $"run {runs}:\n{client.Describe()}";

            client.ExitCode.ShouldBe(0, context);
            var t = ClientTranscript.Parse(client.StdoutLines);
            t.Success.ShouldBeTrue($"'=== Success! ===' must be the last line; {context}");
            t.Unparsed.ShouldBeEmpty(context);
            t.Attempts.Count.ShouldBeInRange(1, 2, $"server1 is inhibited after one failure, so at most 2 attempts; {context}");
            t.Attempts.Select(a => a.Number).ShouldBe(Enumerable.Range(1, t.Attempts.Count), context);

            var last = t.Attempts[^1];
            last.Servers.ShouldBe(["server2"], context);
            last.Text.ShouldBe("hello world", context);
            last.Errors.ShouldBeEmpty(context);
            last.Retried.ShouldBeFalse(context);

            if (t.Attempts.Count == 2)
            {
                var first = t.Attempts[0];
                first.Items.ShouldBe([("server1", "h"), ("server1", "e")], context);
                first.Errors.ShouldBe([StreamIncomplete], context);
                first.Retried.ShouldBeTrue(context);
                client.Stderr.ShouldContain($"Reporting instance {servers[0].InstanceId} down due to stream error", Case.Sensitive, context);
                failovers++;
            }
            else
            {
                direct++;
            }
        }

        failovers.ShouldBeGreaterThan(0, $"no run out of {runs} took the failover path (server1 first, then server2); outputs:\n{outputs}");

        // server1 saw exactly the requests that failed over (each cut once, after 2 characters) and none of the
        // direct runs: those went to server2 only, as the client's output said.
        const string Cut = "Simulating stream error after 2 characters (server: server1)";
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (Count(server1.Stdout, Cut) < failovers && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }

        Count(server1.Stdout, Cut).ShouldBe(failovers, $"{failovers} failover(s) and {direct} direct run(s); {server1.Describe()}");
    }

    private static int Count(string text, string line) =>
        text.Split('\n').Count(l => l.Contains(line, StringComparison.Ordinal));

    [Fact]
    public async Task With_only_an_always_failing_server_the_client_fails_after_3_attempts()
    {
        var (server, instanceId) = await _harness.StartServerAsync("server1", "always");

        // As the seed's client: retries at once, without waiting for the inhibited instance to return.
        var client = await _harness.RunClientAsync(new Dictionary<string, string> { ["DYN_MAX_RETRY_WAIT_SECS"] = "0" });

        var context = client.Describe() + server.Describe();
        client.ExitCode.ShouldBe(1, context);
        var t = ClientTranscript.Parse(client.StdoutLines);
        t.Success.ShouldBeFalse(context);

        // Attempt 1 reaches the server and is cut; the only instance is then inhibited, so attempts 2 and 3
        // find nothing to route to. Every attempt counts, as in the original client.
        t.Attempts.Count.ShouldBe(3, context);
        t.Attempts[0].Items.ShouldBe([("server1", "h"), ("server1", "e")], context);
        t.Attempts[0].Errors.ShouldBe([StreamIncomplete], context);
        t.Attempts[1].Errors.ShouldBe(["no instances found for endpoint demo/backend/generate"], context);
        t.Attempts[2].Errors.ShouldBe(["no instances found for endpoint demo/backend/generate"], context);
        t.Attempts[0].Retried.ShouldBeTrue(context);
        t.Attempts[2].Retried.ShouldBeFalse(context);
        t.Unparsed.ShouldBe([$"Failed after 3 attempts: no instances found for endpoint demo/backend/generate; last error: {StreamIncomplete}"], context);
        client.Stderr.ShouldContain($"Reporting instance {instanceId} down due to stream error", Case.Sensitive, context);
        server.HasExited.ShouldBeFalse(context);
    }
}
