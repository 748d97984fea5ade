using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using RequestMigration.Tests.EndToEnd;
using Shouldly;

namespace RequestMigration.Tests.Cli;

/// <summary>Runs the built rmctl tool (src/Tools.Cli) as a child process, as an operator or a script would.</summary>
internal static partial class Rmctl
{
    private static int s_runs;

    public static string Dll
    {
        get
        {
            var path = Path.Combine(ExampleHarness.RepoRoot, "src", "Tools.Cli", "bin", ExampleHarness.Configuration, "net10.0", "rmctl.dll");
            return File.Exists(path)
                ? path
                : throw new FileNotFoundException($"{path} does not exist: build the solution ('dotnet build -c {ExampleHarness.Configuration}') before running the rmctl tests", path);
        }
    }

    /// <summary>Starts rmctl without waiting (watch); the caller disposes it, which kills it if still running.</summary>
    public static ChildProcess Start(IReadOnlyDictionary<string, string> environment, params string[] arguments) =>
        ChildProcess.Start($"rmctl-{Interlocked.Increment(ref s_runs)} {string.Join(' ', arguments)}", Dll, environment, arguments: arguments);

    /// <summary>Runs rmctl to completion.</summary>
    public static async Task<RmctlRun> RunAsync(IReadOnlyDictionary<string, string> environment, params string[] arguments)
    {
        await using var p = Start(environment, arguments);
        var code = await p.WaitForExitAsync(TimeSpan.FromSeconds(30));
        return new RmctlRun(code, p.Stdout, p.Stderr, p.StdoutLines, p.Describe());
    }

    /// <summary>
    /// Stops rmctl as Ctrl+C does. A process started with SIGINT ignored (a test run started in the background of a
    /// non-interactive shell passes that on) never sees SIGINT, so SIGTERM, which rmctl handles the same way, stands in.
    /// </summary>
    public static Task InterruptAsync(ChildProcess p) => IgnoresSigint(p.Id) ? p.SendSigtermAsync() : p.SendSigintAsync();

    /// <summary>Every stdout line of a --json stream, parsed (a line that is not JSON fails the test).</summary>
    public static List<JsonElement> JsonLines(IEnumerable<string> lines, string context) =>
        [.. lines.Where(l => l.Length > 0).Select(l =>
        {
            try
            {
                using var doc = JsonDocument.Parse(l);
                return doc.RootElement.Clone();
            }
            catch (JsonException ex)
            {
                throw new ShouldAssertException($"stdout line is not JSON ({ex.Message}): {l}\n{context}");
            }
        })];

    /// <summary>Waits until a --json watch has printed a <paramref name="kind"/> event for <paramref name="instanceId"/>.</summary>
    public static async Task WaitForEventAsync(ChildProcess watch, string kind, string instanceId, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (!watch.StdoutLines.Any(l => l.Contains($"\"event\":\"{kind}\"", StringComparison.Ordinal) && l.Contains($"\"instance_id\":\"{instanceId}\"", StringComparison.Ordinal)))
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"no '{kind}' event for {instanceId} within {(timeout ?? TimeSpan.FromSeconds(10)).TotalSeconds} s\n{watch.Describe()}");
            }

            await Task.Delay(25);
        }
    }

    /// <summary>The id and address an example server printed when it registered.</summary>
    public static async Task<(string Id, string Address)> ServingAsync(ChildProcess server)
    {
        var line = await server.WaitForLineAsync(ExampleHarness.ServingLine, TimeSpan.FromSeconds(30));
        var m = ServingPattern().Match(line);
        m.Success.ShouldBeTrue(line);
        return (m.Groups[1].Value, m.Groups[2].Value);
    }

    private static bool IgnoresSigint(int pid)
    {
        try
        {
            var line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
            return line is not null && (ulong.Parse(line["SigIgn:".Length..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture) & 0b10) != 0;
        }
        catch (IOException)
        {
            return false;
        }
    }

    [GeneratedRegex(@"as instance ([0-9a-f]+) over \w+ at (\S+) ")]
    private static partial Regex ServingPattern();
}

/// <summary>One finished rmctl run.</summary>
internal sealed record RmctlRun(int ExitCode, string Stdout, string Stderr, IReadOnlyList<string> StdoutLines, string Description)
{
    /// <summary>The single JSON document stdout must be with --json.</summary>
    public JsonElement Json()
    {
        try
        {
            using var doc = JsonDocument.Parse(Stdout);
            return doc.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw new ShouldAssertException($"stdout is not one JSON document ({ex.Message})\n{Description}");
        }
    }

    /// <summary>A failure is one clear line, never a .NET stack trace.</summary>
    public void ShouldHaveNoStackTrace()
    {
        Stderr.ShouldNotContain("   at ", Case.Sensitive, Description);
        Stderr.ShouldNotContain("Exception:", Case.Sensitive, Description);
    }
}
