using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>
/// The README's "Using it from your code" snippet, as a new user would use it (issue 8, "Clear errors for a new
/// user"): its project file and Program.cs, taken from README.md, in a fresh directory outside the repository,
/// built with <c>dotnet build</c> and run.
/// </summary>
[Collection(EndToEndCollection.Name)]
public sealed class ReadmeSnippetTests : IDisposable
{
    // Where the README's project file expects the clone of this repository.
    private const string ClonePlaceholder = "../RequestMigration/";

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "rm-readme-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    [Fact]
    public async Task The_library_snippet_builds_in_a_new_project_and_runs_as_shown()
    {
        var readme = await File.ReadAllTextAsync(Path.Combine(ExampleHarness.RepoRoot, "README.md"), TestContext.Current.CancellationToken);
        var project = Snippet(readme, "csproj", "xml");
        var program = Snippet(readme, "program", "csharp");
        project.ShouldContain(ClonePlaceholder, Case.Sensitive, "the project file refers to the runtime in a clone of the repository");

        var app = Path.Combine(_dir, "app");
        Directory.CreateDirectory(app);
        await File.WriteAllTextAsync(Path.Combine(app, "app.csproj"), project.Replace(ClonePlaceholder, ExampleHarness.RepoRoot + Path.DirectorySeparatorChar, StringComparison.Ordinal), TestContext.Current.CancellationToken);
        await File.WriteAllTextAsync(Path.Combine(app, "Program.cs"), program, TestContext.Current.CancellationToken);

        // The same configuration as this test run, so the runtime's projects are already built and up to date.
        var (buildCode, buildOutput) = await RunAsync(app, TimeSpan.FromMinutes(4), ["build", "-c", ExampleHarness.Configuration, "-nologo", "-v", "q"], new Dictionary<string, string>());
        buildCode.ShouldBe(0, $"the README's snippet does not build:\n{buildOutput}");

        var dll = Path.Combine(app, "bin", ExampleHarness.Configuration, "net10.0", "app.dll");
        File.Exists(dll).ShouldBeTrue(buildOutput);
        File.Exists(Path.Combine(app, "bin", ExampleHarness.Configuration, "net10.0", "certs", "ca.pem")).ShouldBeTrue("the project file copies the certificates next to the program");
        var store = Path.Combine(_dir, "store");
        Directory.CreateDirectory(store);
        var (runCode, runOutput) = await RunAsync(Path.GetDirectoryName(dll)!, TimeSpan.FromSeconds(60), [dll], new Dictionary<string, string> { ["DYN_FILE_KV"] = store });

        runCode.ShouldBe(0, runOutput);
        runOutput.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length == 1).ShouldBe(["h", "e", "l", "l", "o"], runOutput);
        runOutput.ShouldNotContain("attempt failed", Case.Sensitive, runOutput);
    }

    /// <summary>The fenced block of <paramref name="language"/> that follows the marker <c>&lt;!-- readme-snippet: name ... --&gt;</c>.</summary>
    internal static string Snippet(string readme, string name, string language)
    {
        var m = new Regex($@"<!-- readme-snippet: {Regex.Escape(name)}\b[^>]*-->\s*```{Regex.Escape(language)}\r?\n(?<code>.*?)\r?\n```", RegexOptions.Singleline).Match(readme);
        m.Success.ShouldBeTrue($"README.md has no '<!-- readme-snippet: {name} -->' marker followed by a ```{language} block");
        return m.Groups["code"].Value;
    }

    /// <summary>
    /// Runs <c>dotnet</c> with <paramref name="arguments"/> as a new user's shell would (none of this run's
    /// <c>DYN_*</c>, <c>ETCD_*</c> or <c>RequestMigration__*</c> settings), plus <paramref name="environment"/>;
    /// the exit code and stdout and stderr interleaved.
    /// </summary>
    /// <exception cref="TimeoutException">Still running after <paramref name="timeout"/> (then killed).</exception>
    internal static async Task<(int Code, string Output)> RunAsync(string workingDirectory, TimeSpan timeout, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string> environment)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments)
        {
            psi.ArgumentList.Add(a);
        }

        // As a new user's shell would be: none of this test run's runtime settings.
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("DYN_", StringComparison.Ordinal) || k.StartsWith("ETCD_", StringComparison.Ordinal) || k.StartsWith("RequestMigration__", StringComparison.Ordinal)).ToList())
        {
            psi.Environment.Remove(key);
        }

        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (k, v) in environment)
        {
            psi.Environment[k] = v;
        }

        var output = new StringBuilder();
        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(' ', arguments)} did not finish within {timeout.TotalSeconds:0} s:\n{Output()}");
        }

        process.WaitForExit();
        return (process.ExitCode, Output());

        void Append(string? line)
        {
            if (line is not null)
            {
                lock (output)
                {
                    output.AppendLine(line);
                }
            }
        }

        string Output()
        {
            lock (output)
            {
                return output.ToString();
            }
        }
    }
}
