using System.Text.Json;
using System.Text.RegularExpressions;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.Routing;
using RequestMigration.Tests.EndToEnd;
using Shouldly;

namespace RequestMigration.Tests.ConnectionSwap;

/// <summary>
/// The connection-swap example's roles as real processes on 127.0.0.1 with free ports (port 0 everywhere),
/// sharing a file store unique to one test, with short timings. Every process is killed by PID on dispose.
/// </summary>
internal sealed partial class SwapCluster : IAsyncDisposable
{
    private readonly ExampleHarness _store = new();
    private readonly List<ChildProcess> _processes = [];

    /// <summary>Settings every process gets: TCP, the test's file store, quick worker heartbeats and tokens.</summary>
    public Dictionary<string, string> Environment(IReadOnlyDictionary<string, string>? extra = null)
    {
        var env = _store.BaseEnvironment();
        env["CONNECTION_SWAP_TOKEN_INTERVAL_MS"] = "100";
        env["CONNECTION_SWAP_WORKER_HEARTBEAT_SECS"] = "0.5";
        foreach (var (k, v) in extra ?? new Dictionary<string, string>())
        {
            env[k] = v;
        }

        return env;
    }

    public ChildProcess Launch(string name, string role, IReadOnlyDictionary<string, string>? extra = null)
    {
        var p = ChildProcess.Start(name, ExampleHarness.ConnectionSwapDll, Environment(extra), arguments: [role]);
        _processes.Add(p);
        return p;
    }

    /// <summary>Starts a director on free ports and waits until it is ready.</summary>
    public async Task<Director> StartDirectorAsync(string label = "director", IReadOnlyDictionary<string, string>? extra = null)
    {
        var env = new Dictionary<string, string>
        {
            ["CONNECTION_SWAP_DIRECTOR_LABEL"] = label,
            ["CONNECTION_SWAP_DIRECTOR_USER_ADDR"] = "127.0.0.1:0",
            ["CONNECTION_SWAP_DIRECTOR_MGMT_ADDR"] = "127.0.0.1:0",
        };
        foreach (var (k, v) in extra ?? new Dictionary<string, string>())
        {
            env[k] = v;
        }

        var p = Launch(label, "director", env);
        var line = await p.WaitForLineAsync("director ready:", TimeSpan.FromSeconds(30));
        var m = ReadyPattern().Match(line);
        m.Success.ShouldBeTrue(line);
        return new Director(p, label, m.Groups["user"].Value, m.Groups["mgmt"].Value);
    }

    /// <summary>Starts a worker on free ports registered with <paramref name="directors"/>, and waits until every one of them has it.</summary>
    public async Task<Worker> StartWorkerAsync(string label, IReadOnlyList<Director> directors, IReadOnlyDictionary<string, string>? extra = null)
    {
        var env = new Dictionary<string, string>
        {
            ["CONNECTION_SWAP_WORKER_LABEL"] = label,
            ["CONNECTION_SWAP_WORKER_USER_ADDR"] = "127.0.0.1:0",
            ["CONNECTION_SWAP_WORKER_MGMT_ADDR"] = "127.0.0.1:0",
            ["CONNECTION_SWAP_DIRECTOR_MGMT_ADDR"] = string.Join(",", directors.Select(d => d.Mgmt)),
        };
        foreach (var (k, v) in extra ?? new Dictionary<string, string>())
        {
            env[k] = v;
        }

        var p = Launch(label, "worker", env);
        var ready = await p.WaitForLineAsync("worker ready:", TimeSpan.FromSeconds(30));
        foreach (var d in directors)
        {
            await p.WaitForLineAsync($"registered with director={d.Label} ", TimeSpan.FromSeconds(30));
            await d.Process.WaitForLineAsync($"worker={label} worker.addr=", TimeSpan.FromSeconds(10));
        }

        var m = ReadyPattern().Match(ready);
        return new Worker(p, label, m.Groups["user"].Value, m.Groups["mgmt"].Value);
    }

    /// <summary>Starts a worker pair plus a director, the example's basic layout.</summary>
    public async Task<(Director Director, Worker A, Worker B)> StartBasicAsync(IReadOnlyDictionary<string, string>? workerSettings = null, IReadOnlyDictionary<string, string>? directorSettings = null)
    {
        var director = await StartDirectorAsync(extra: directorSettings);
        var workers = await Task.WhenAll(StartWorkerAsync("worker-a", [director], workerSettings), StartWorkerAsync("worker-b", [director], workerSettings));
        return (director, workers[0], workers[1]);
    }

    public ChildProcess LaunchClient(string mode, int tokens, IReadOnlyDictionary<string, string>? extra = null)
    {
        var env = new Dictionary<string, string>
        {
            ["CONNECTION_SWAP_CLIENT_MODE"] = mode,
            ["CONNECTION_SWAP_CLIENT_TOKENS"] = tokens.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["CONNECTION_SWAP_CLIENT_MAX_WAIT_SECS"] = "30",
        };
        foreach (var (k, v) in extra ?? new Dictionary<string, string>())
        {
            env[k] = v;
        }

        return Launch("client", "client", env);
    }

    /// <summary>Waits until the client holds at least <paramref name="tokens"/> tokens; returns the worker of the last one.</summary>
    public static async Task<string> WaitForTokensAsync(ChildProcess client, int tokens, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var got = Transcript.Parse(client).Tokens;
            if (got.Count >= tokens)
            {
                return got[^1].Worker;
            }

            if (client.HasExited || DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"the client got {got.Count} of {tokens} tokens\n{Describe()}");
            }

            await Task.Delay(25);
        }

        string Describe() => client.Describe();
    }

    /// <summary>Everything every process printed, for failure messages.</summary>
    public string DescribeAll() => string.Concat(_processes.Select(p => p.Describe()));

    /// <summary>Asks a MGMT port for its health, as a monitoring tool would (a one-item response).</summary>
    public static async Task<JsonElement> HealthAsync(string mgmtAddress, string endpoint, string transport = "tcp")
    {
        await using var store = new MemoryKeyValueStore();
        var options = new RuntimeOptions();
        await using var runtime = new RequestMigrationRuntime(options, store: store);
        var id = EndpointId.Parse(endpoint);
        await runtime.Registry.PutAsync(new InstanceRecord { InstanceId = 1, Namespace = id.Namespace, Component = id.Component, Endpoint = id.Endpoint, Transport = transport, Address = mgmtAddress }, 0);
        var router = runtime.CreateRouter<Dictionary<string, string>, JsonElement>(id, new RouterOptions());
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(5));
        await foreach (var item in router.DirectAsync(new Dictionary<string, string> { ["from"] = "test" }, 1))
        {
            return item.Data;
        }

        throw new InvalidOperationException("empty health response");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _processes)
        {
            await p.DisposeAsync();
        }

        await _store.DisposeAsync();
    }

    [GeneratedRegex(@"USER=(?<user>\S+) MGMT=(?<mgmt>\S+) ")]
    private static partial Regex ReadyPattern();

    internal sealed record Director(ChildProcess Process, string Label, string User, string Mgmt);

    internal sealed record Worker(ChildProcess Process, string Label, string User, string Mgmt);
}

/// <summary>What a client printed: its tokens in arrival order, and its other lines.</summary>
internal sealed partial record Transcript(IReadOnlyList<(long Sequence, string Worker)> Tokens, IReadOnlyList<string> Lines, string ConnectionIds)
{
    public static Transcript Parse(ChildProcess client)
    {
        var lines = client.StdoutLines;
        var tokens = new List<(long, string)>();
        var ids = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var line in lines)
        {
            var m = TokenPattern().Match(line);
            if (m.Success)
            {
                ids.Add(m.Groups["conn"].Value);
                tokens.Add((long.Parse(m.Groups["seq"].Value, System.Globalization.CultureInfo.InvariantCulture), m.Groups["worker"].Value));
            }
        }

        return new Transcript(tokens, lines, string.Join(",", ids));
    }

    /// <summary>Times the worker changed from one token to the next.</summary>
    public int WorkerSwitches => Tokens.Zip(Tokens.Skip(1)).Count(p => p.First.Worker != p.Second.Worker);

    public int Count(string text) => Lines.Count(l => l.Contains(text, StringComparison.Ordinal));

    /// <summary>The time stamp (<c>[HH:mm:ss.fff ...</c>) of the first line containing <paramref name="text"/>.</summary>
    public TimeSpan TimeOf(string text)
    {
        var line = Lines.First(l => l.Contains(text, StringComparison.Ordinal));
        return TimeSpan.ParseExact(line[1..13], @"hh\:mm\:ss\.fff", System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Asserts that the sequence is exactly 1..<paramref name="total"/>: none missing, none repeated, in order.</summary>
    public void ShouldBeGaplessAndDuplicateFree(int total, string context)
    {
        Tokens.Select(t => t.Sequence).ShouldBe(Enumerable.Range(1, total).Select(i => (long)i), $"the client's sequence is not exactly 1..{total}\n{context}");
        ConnectionIds.Split(",").Length.ShouldBe(1, $"one logical session (connection.id) for the whole life of the client\n{context}");
    }

    [GeneratedRegex(@"connection\.id=(?<conn>conn-[0-9a-f]{4}) worker=(?<worker>\S+) sequence=(?<seq>\d+): received token")]
    private static partial Regex TokenPattern();
}
