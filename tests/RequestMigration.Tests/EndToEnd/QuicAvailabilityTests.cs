using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>
/// What QUIC's presence or absence does to real processes: a QUIC-only server without libmsquic, and an
/// auto-mode server with libmsquic reached by a client without it. "Without libmsquic" is a child process
/// in which the library is hidden (<see cref="WithoutQuic"/>).
/// </summary>
[Collection(EndToEndCollection.Name)]
public sealed class QuicAvailabilityTests : IAsyncLifetime
{
    private readonly ExampleHarness _harness = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _harness.DisposeAsync();

    [Fact]
    public async Task A_quic_only_server_without_libmsquic_exits_with_one_clear_line()
    {
        Assert.SkipWhen(WithoutQuic.SkipReason is not null, WithoutQuic.SkipReason ?? string.Empty);
        var server = _harness.LaunchServer("server1", "never", new Dictionary<string, string> { ["DYN_TRANSPORT"] = "quic" }, withoutQuic: true);
        var code = await server.WaitForExitAsync(TimeSpan.FromSeconds(30));

        var context = server.Describe();
        code.ShouldBe(2, context);
        var lines = (server.Stdout + "\n" + server.Stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines.ShouldHaveSingleItem(context).ShouldStartWith("error: DYN_TRANSPORT=quic, but System.Net.Quic is not supported in this process", Case.Sensitive, context);
        lines[0].ShouldContain("DYN_TRANSPORT=auto or tcp", Case.Sensitive, context);
        lines[0].ShouldNotContain("using TCP", Case.Sensitive, context);
        _harness.InstanceFiles().ShouldBeEmpty("nothing was registered");
    }

    [Fact]
    public async Task An_auto_server_with_quic_serves_clients_that_have_no_quic_over_tcp()
    {
        Assert.SkipUnless(TransportKinds.IsQuicSupported, "QUIC skipped: libmsquic is not installed here, so auto mode serves TCP only and every client reaches it.");
        Assert.SkipWhen(WithoutQuic.SkipReason is not null, WithoutQuic.SkipReason ?? string.Empty);
        var auto = new Dictionary<string, string> { ["DYN_TRANSPORT"] = "auto" };
        await _harness.StartServerAsync("server1", "never", auto);

        var record = File.ReadAllText(_harness.InstanceFiles().ShouldHaveSingleItem());
        record.ShouldContain("\"transport\":\"quic\"");
        record.ShouldContain("\"alternates\":[{\"transport\":\"tcp\"");

        var withQuic = await _harness.RunClientAsync(auto);
        withQuic.ExitCode.ShouldBe(0, withQuic.Describe());

        var noQuic = await _harness.RunClientAsync(new Dictionary<string, string> { ["DYN_TRANSPORT"] = "auto", ["CLIENT_LOG_LEVEL"] = "Debug" }, withoutQuic: true);
        var context = noQuic.Describe();
        noQuic.ExitCode.ShouldBe(0, context);
        var t = ClientTranscript.Parse(noQuic.StdoutLines);
        t.Success.ShouldBeTrue(context);
        t.Attempts.ShouldHaveSingleItem(context).Text.ShouldBe("hello world", context);
    }
}
