using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>SIGTERM to a server with a stream in flight: the stream completes, the server deregisters and exits 0.</summary>
[Collection(EndToEndCollection.Name)]
public sealed class GracefulShutdownTests : IAsyncLifetime
{
    private const string Input = "abcdefghijklmno"; // 15 items, 200 ms apart: about 3 s of streaming
    private readonly ExampleHarness _harness = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _harness.DisposeAsync();

    [Fact]
    public async Task Sigterm_drains_the_in_flight_stream_then_exits_0_and_removes_the_instance()
    {
        var (server, instanceId) = await _harness.StartServerAsync("server1", "never", new Dictionary<string, string> { ["ITEM_DELAY_MS"] = "200" });
        _harness.InstanceFiles().Count.ShouldBe(1, server.Describe());
        _harness.InstanceFiles()[0].ShouldEndWith(instanceId, Case.Sensitive, "the instance file is named after the instance id");

        var client = _harness.LaunchClient(new Dictionary<string, string> { ["CLIENT_INPUT"] = Input });
        await client.WaitForLineAsync("Annotated {", TimeSpan.FromSeconds(30));
        await server.SendSigtermAsync();

        var clientCode = await client.WaitForExitAsync(TimeSpan.FromSeconds(30));
        var serverCode = await server.WaitForExitAsync(TimeSpan.FromSeconds(20));

        var context = _harness.DescribeAll();
        clientCode.ShouldBe(0, context);
        var t = ClientTranscript.Parse(client.StdoutLines);
        t.Success.ShouldBeTrue(context);
        t.Attempts.Count.ShouldBe(1, $"the in-flight stream must finish on the stopping server, not fail over; {context}");
        t.Attempts[0].Errors.ShouldBeEmpty(context);
        t.Attempts[0].Servers.ShouldBe(["server1"], context);
        t.Attempts[0].Text.ShouldBe(Input, context);

        serverCode.ShouldBe(0, context);
        server.Stdout.ShouldContain($"server: instance {instanceId} stopping: deregistered, draining 1 stream(s)", Case.Sensitive, context);
        server.Stdout.ShouldContain($"server: instance {instanceId} stopped", Case.Sensitive, context);
        server.Stdout.ShouldNotContain("drain timeout", Case.Sensitive, context);
        server.Stdout.ShouldContain("WRN] transport: using the development CA", Case.Sensitive, $"the harness runs in Production with certs/ca.pem, which must not be silent; {context}");
        _harness.InstanceFiles().ShouldBeEmpty($"the stopped server's instance file must be gone from {_harness.StoreDir}; {context}");
    }
}
