using System.Collections.Concurrent;
using System.Text;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>
/// Churn as real processes on the file store: four example servers, one of them killed with SIGKILL and
/// replaced every few seconds (never the last one alive), while eight client loops stream 40-character
/// inputs. Bounded in time; every process is stopped by the harness.
/// </summary>
[Collection(EndToEndCollection.Name)]
public sealed class ChaosTests : IAsyncLifetime
{
    private static readonly TimeSpan ChaosDuration = TimeSpan.FromSeconds(20);
    private const int Servers = 4;
    private const int ClientLoops = 8;
    private const int InputLength = 40;

    private readonly ExampleHarness _harness = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _harness.DisposeAsync();

    [Theory]
    [InlineData("tcp")]
    [InlineData("quic")]
    public async Task With_migration_every_run_delivers_its_exact_input_while_servers_are_killed(string transport)
    {
        SkipWithoutQuic(transport);
        var runs = await RunChaosAsync(transport, migration: true);

        var failures = runs.Where(r => r.ExitCode != 0 || !r.Transcript.Success || r.Transcript.Attempts.Count != 1 || r.Transcript.Attempts[0].Text != r.Input || r.Transcript.Attempts[0].Errors.Count > 0).ToList();
        failures.ShouldBeEmpty($"{failures.Count} of {runs.Count} runs did not deliver their exact input:\n{string.Concat(failures.Take(3).Select(f => f.Output))}");
        var switched = runs.Count(r => r.Transcript.Attempts[0].Servers.Count() > 1);
        switched.ShouldBeGreaterThan(0, $"none of {runs.Count} runs switched server mid-stream, so the chaos never hit a stream");
        runs.Count.ShouldBeGreaterThanOrEqualTo(ClientLoops * 2);
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("quic")]
    public async Task Without_migration_every_run_completes_in_its_last_attempt_or_fails_clearly(string transport)
    {
        SkipWithoutQuic(transport);
        var runs = await RunChaosAsync(transport, migration: false);

        foreach (var r in runs)
        {
            var t = r.Transcript;
            t.Attempts.ShouldNotBeEmpty(r.Output);
            foreach (var a in t.Attempts)
            {
                r.Input.ShouldStartWith(a.Text, Case.Sensitive, $"each attempt starts over from the first character\n{r.Output}");
            }

            if (r.ExitCode == 0)
            {
                t.Success.ShouldBeTrue(r.Output);
                t.Attempts[^1].Text.ShouldBe(r.Input, r.Output);
                t.Attempts[^1].Errors.ShouldBeEmpty(r.Output);
            }
            else
            {
                r.ExitCode.ShouldBe(1, r.Output);
                t.Unparsed.ShouldHaveSingleItem(r.Output).ShouldStartWith("Failed after 3 attempts: ", Case.Sensitive, r.Output);
            }
        }

        runs.Count(r => r.ExitCode == 0).ShouldBeGreaterThan(runs.Count / 2, string.Concat(runs.Where(r => r.ExitCode != 0).Take(3).Select(r => r.Output)));
    }

    private static void SkipWithoutQuic(string transport) =>
        Assert.SkipWhen(transport == "quic" && !TransportKinds.IsQuicSupported, "QUIC skipped: libmsquic is not installed here; the same chaos runs over TCP.");

    private async Task<IReadOnlyList<Run>> RunChaosAsync(string transport, bool migration)
    {
        // 50 ms per item: a 40-character stream lasts 2 s, longer than a client process takes to start, so
        // kills land mid-stream. QUIC notices a peer killed without closing only when its idle timeout
        // passes (msquic ignores ICMP on an established connection); 5 s keeps this run short.
        var env = new Dictionary<string, string>
        {
            ["DYN_TRANSPORT"] = transport,
            ["ITEM_DELAY_MS"] = "50",
            ["DYN_QUIC_IDLE_TIMEOUT_SECS"] = "5",
        };
        var live = new List<ChildProcess>();
        var generation = 0;
        var starting = await Task.WhenAll(Enumerable.Range(1, Servers).Select(i => _harness.StartServerAsync($"s{i}g0", "never", env)));
        live.AddRange(starting.Select(s => s.Process));

        var runs = new ConcurrentBag<Run>();
        var deadline = DateTime.UtcNow + ChaosDuration;
        var clientEnv = new Dictionary<string, string>
        {
            ["DYN_TRANSPORT"] = transport,
            ["DYN_QUIC_IDLE_TIMEOUT_SECS"] = "5",
            ["DYN_MIGRATION"] = migration ? "true" : "false",
        };
        var clients = Enumerable.Range(0, ClientLoops).Select(loop => Task.Run(async () =>
        {
            var random = new Random(loop);
            for (var n = 0; DateTime.UtcNow < deadline; n++)
            {
                var input = RandomText(random, InputLength);
                var run = await _harness.RunClientAsync(new Dictionary<string, string>(clientEnv) { ["CLIENT_INPUT"] = input }, timeoutSeconds: 60);
                runs.Add(new Run(input, run.ExitCode, ClientTranscript.Parse(run.StdoutLines), run.Describe()));
            }
        })).ToArray();

        var chaos = new Random(42);
        while (DateTime.UtcNow < deadline)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(chaos.Next(2000, 4000)));
            if (DateTime.UtcNow >= deadline)
            {
                break;
            }

            // Kill one of the live servers (there are always others) and start its replacement at once.
            var victim = live[chaos.Next(live.Count)];
            await victim.KillHardAsync();
            live.Remove(victim);
            generation++;
            live.Add(_harness.LaunchServer($"s{generation % Servers + 1}g{generation}", "never", env));
        }

        await Task.WhenAll(clients);
        var all = runs.ToList();
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"chaos over {transport}, migration {migration}: {all.Count} runs, {generation} kills, {all.Count(r => r.ExitCode == 0)} succeeded, "
            + $"{all.Count(r => r.Transcript.Attempts.Count > 0 && r.Transcript.Attempts.Any(a => a.Servers.Count() > 1))} switched server mid-attempt, "
            + $"{all.Count(r => r.Transcript.Attempts.Count > 1)} retried");
        return all;
    }

    private static string RandomText(Random random, int length)
    {
        const string Alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        var sb = new StringBuilder(length);
        for (var i = 0; i < length; i++)
        {
            sb.Append(Alphabet[random.Next(Alphabet.Length)]);
        }

        return sb.ToString();
    }

    private sealed record Run(string Input, int ExitCode, ClientTranscript Transcript, string Output);
}
