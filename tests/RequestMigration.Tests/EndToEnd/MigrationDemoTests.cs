using System.Text;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>The seed demo with migration on (DYN_MIGRATION=true), as real processes: failover the consumer cannot see.</summary>
[Collection(EndToEndCollection.Name)]
public sealed class MigrationDemoTests : IAsyncLifetime
{
    private readonly ExampleHarness _harness = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _harness.DisposeAsync();

    [Fact]
    public async Task A_stream_cut_on_server1_continues_on_server2_as_one_stream()
    {
        await Task.WhenAll(_harness.StartServerAsync("server1", "always"), _harness.StartServerAsync("server2", "never"));
        var migrate = new Dictionary<string, string> { ["DYN_MIGRATION"] = "true" };
        var outputs = new StringBuilder();
        var migrated = 0;
        for (var run = 0; run < 10 && (run < 3 || migrated == 0); run++)
        {
            var client = await _harness.RunClientAsync(migrate);
            outputs.Append(client.Describe());
            client.ExitCode.ShouldBe(0, client.Describe());
            var t = ClientTranscript.Parse(client.StdoutLines);
            t.Success.ShouldBeTrue(client.Describe());

            // One attempt as far as the consumer can tell: no error line, no retry, every character once.
            t.Attempts.Count.ShouldBe(1, client.Describe());
            t.Attempts[0].Errors.ShouldBeEmpty(client.Describe());
            t.Attempts[0].Text.ShouldBe("hello world", client.Describe());
            if (t.Attempts[0].Items[0].Server == "server1")
            {
                t.Attempts[0].Items.Take(2).ShouldAllBe(i => i.Server == "server1", client.Describe());
                t.Attempts[0].Items.Skip(2).ShouldAllBe(i => i.Server == "server2", client.Describe());
                migrated++;
            }
        }

        migrated.ShouldBeGreaterThan(0, $"no run started on server1, so none migrated:\n{outputs}");
    }
}
