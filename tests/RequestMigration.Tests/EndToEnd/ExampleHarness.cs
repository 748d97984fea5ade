using System.Reflection;
using System.Text.RegularExpressions;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>
/// Runs the example server and client as real processes sharing a file-store directory that is unique to
/// one test. Every process it starts is killed (with its tree) on dispose, and the directory is deleted.
/// </summary>
internal sealed partial class ExampleHarness : IAsyncDisposable
{
    public const string Endpoint = "demo/backend/generate";
    public const string ServingLine = "server: serving demo/backend/generate as instance";

    private static readonly Lazy<string> LazyRepoRoot = new(FindRepoRoot);
    private readonly List<ChildProcess> _processes = [];
    private int _clients;

    public ExampleHarness()
    {
        StoreDir = Path.Combine(Path.GetTempPath(), "rm-e2e-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(StoreDir);
    }

    /// <summary>The <c>DYN_FILE_KV</c> directory of this test.</summary>
    public string StoreDir { get; }

    public static string RepoRoot => LazyRepoRoot.Value;

    /// <summary>Debug or Release: the configuration the test assembly itself was built in.</summary>
    public static string Configuration =>
        typeof(ExampleHarness).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration is { Length: > 0 } c ? c : "Debug";

    public static string ServerDll => Built("Examples.Server");

    public static string ClientDll => Built("Examples.Client");

    public static string ConnectionSwapDll => Built("Examples.ConnectionSwap");

    /// <summary>The environment every example process gets (before per-process additions).</summary>
    public Dictionary<string, string> BaseEnvironment() => new(StringComparer.Ordinal)
    {
        ["DYN_STORE_KV"] = "file",
        ["DYN_FILE_KV"] = StoreDir,
        ["DYN_TRANSPORT"] = "tcp",
        ["DOTNET_ENVIRONMENT"] = "Production",
    };

    /// <summary>Starts a server process without waiting for it to become ready.</summary>
    public ChildProcess LaunchServer(string name, string failureMode, IReadOnlyDictionary<string, string>? extra = null, bool withoutQuic = false)
    {
        var env = BaseEnvironment();
        env["SERVER_NAME"] = name;
        env["FAILURE_MODE"] = failureMode;
        foreach (var (k, v) in extra ?? new Dictionary<string, string>())
        {
            env[k] = v;
        }

        var p = ChildProcess.Start(name, ServerDll, env, withoutQuic);
        _processes.Add(p);
        return p;
    }

    /// <summary>Starts a server and waits until it has registered its instance; returns it with its instance id.</summary>
    public async Task<(ChildProcess Process, string InstanceId)> StartServerAsync(string name, string failureMode, IReadOnlyDictionary<string, string>? extra = null)
    {
        var p = LaunchServer(name, failureMode, extra);
        var line = await p.WaitForLineAsync(ServingLine, TimeSpan.FromSeconds(30));
        var m = InstanceIdPattern().Match(line);
        if (!m.Success)
        {
            throw new InvalidOperationException($"cannot find the instance id in '{line}'\n{p.Describe()}");
        }

        return (p, m.Groups[1].Value);
    }

    /// <summary>Starts a client process (it runs one request and exits).</summary>
    public ChildProcess LaunchClient(IReadOnlyDictionary<string, string>? extra = null, bool withoutQuic = false)
    {
        var env = BaseEnvironment();
        env["CLIENT_WAIT_SECS"] = "10";
        foreach (var (k, v) in extra ?? new Dictionary<string, string>())
        {
            env[k] = v;
        }

        var p = ChildProcess.Start($"client{++_clients}", ClientDll, env, withoutQuic);
        _processes.Add(p);
        return p;
    }

    /// <summary>Runs a client to completion.</summary>
    public async Task<ChildProcess> RunClientAsync(IReadOnlyDictionary<string, string>? extra = null, int timeoutSeconds = 30, bool withoutQuic = false)
    {
        var p = LaunchClient(extra, withoutQuic);
        await p.WaitForExitAsync(TimeSpan.FromSeconds(timeoutSeconds));
        return p;
    }

    /// <summary>Instance record files currently in the store directory.</summary>
    public IReadOnlyList<string> InstanceFiles()
    {
        var dir = Path.Combine(StoreDir, "v1", "instances");
        return Directory.Exists(dir)
            ? [.. Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Where(f => !Path.GetFileName(f).StartsWith('.'))]
            : [];
    }

    /// <summary>Everything every process printed, for failure messages.</summary>
    public string DescribeAll() => string.Concat(_processes.Select(p => p.Describe()));

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _processes)
        {
            await p.DisposeAsync();
        }

        _processes.Clear();
        for (var i = 0; i < 5; i++)
        {
            try
            {
                if (Directory.Exists(StoreDir))
                {
                    Directory.Delete(StoreDir, recursive: true);
                }

                break;
            }
            catch (IOException)
            {
                await Task.Delay(100);
            }
            catch (UnauthorizedAccessException)
            {
                await Task.Delay(100);
            }
        }
    }

    private static string Built(string project)
    {
        var path = Path.Combine(RepoRoot, "src", project, "bin", Configuration, "net10.0", project + ".dll");
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path} does not exist: build the solution ('dotnet build -c {Configuration}') before running the end-to-end tests", path);
        }

        return path;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "RequestMigration.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException($"no RequestMigration.sln above {AppContext.BaseDirectory}");
    }

    [GeneratedRegex(@"as instance ([0-9a-f]+) ")]
    private static partial Regex InstanceIdPattern();
}
