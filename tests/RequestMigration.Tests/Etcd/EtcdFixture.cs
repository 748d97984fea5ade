using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using RequestMigration.Discovery.Etcd;
using Xunit;

namespace RequestMigration.Tests.Etcd;

/// <summary>
/// A real etcd process on two free loopback ports with its own temporary data directory. It can be stopped
/// (killed, like a crash) and started again on the same ports and data, for outage tests. Disposing kills it
/// by its process id and deletes the data directory.
/// </summary>
public sealed class EtcdFixture : IAsyncLifetime
{
    /// <summary>What to do when no etcd binary is found.</summary>
    public const string InstallHint = "etcd is not installed (looked on PATH and in /usr/bin, /usr/local/bin): run scripts/ensure-etcd.sh to install it (Debian package etcd-server)";

    /// <summary>Set by scripts/test.sh to the reason when installing etcd failed; the etcd tests then fail with it.</summary>
    public const string SetupErrorVariable = "RM_ETCD_SETUP_ERROR";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(20);
    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "rm-etcd-" + Guid.NewGuid().ToString("N"));
    private readonly Queue<string> _output = new();
    private readonly Lock _gate = new();
    private Process? _process;
    private string? _binary;

    /// <summary>The client port (changes only if the first start had to pick new ports).</summary>
    public int ClientPort { get; private set; }

    /// <summary>The peer port.</summary>
    public int PeerPort { get; private set; }

    /// <summary>Where clients connect.</summary>
    public Uri ClientUrl => new($"http://127.0.0.1:{ClientPort}");

    /// <summary>Whether the process is running.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>Store options pointing at this etcd, with watch retries fast enough for tests.</summary>
    public EtcdStoreOptions Options() => new()
    {
        Endpoints = [ClientUrl],
        WatchRetryInitialDelay = TimeSpan.FromMilliseconds(100),
        WatchRetryMaxDelay = TimeSpan.FromMilliseconds(500),
    };

    /// <inheritdoc />
    public async ValueTask InitializeAsync()
    {
        _binary = FindBinaryOrThrow();

        // A free port can be taken between picking it and etcd binding it: pick again a few times.
        for (var attempt = 1; ; attempt++)
        {
            ClientPort = FreePort();
            PeerPort = FreePort();
            try
            {
                await StartAsync();
                return;
            }
            catch (InvalidOperationException)
            {
                await StopAsync();
                DeleteDataDir();
                if (attempt >= 3)
                {
                    throw;
                }
            }
        }
    }

    /// <summary>Starts etcd (again) on the same ports and data directory and waits until it reports healthy.</summary>
    public async Task StartAsync()
    {
        if (IsRunning)
        {
            return;
        }

        var psi = new ProcessStartInfo(_binary!)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("ETCD", StringComparison.Ordinal)).ToList())
        {
            // Settings from the environment (ETCD_NAME, ETCD_DATA_DIR...) would override the flags below.
            psi.Environment.Remove(key);
        }

        var peer = $"http://127.0.0.1:{PeerPort}";
        string[] args =
        [
            "--name", "rmtest",
            "--data-dir", _dataDir,
            "--listen-client-urls", ClientUrl.ToString().TrimEnd('/'),
            "--advertise-client-urls", ClientUrl.ToString().TrimEnd('/'),
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", $"rmtest={peer}",
            "--initial-cluster-state", "new",
        ];
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => Remember(e.Data);
        process.ErrorDataReceived += (_, e) => Remember(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(1) };
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < StartTimeout)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"etcd exited with code {process.ExitCode} while starting on ports {ClientPort}/{PeerPort}:\n{RecentOutput()}");
            }

            try
            {
                var body = await http.GetStringAsync(new Uri(ClientUrl, "/health"));
                if (body.Contains("\"health\":\"true\"", StringComparison.Ordinal))
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                // Not listening yet.
            }

            await Task.Delay(50);
        }

        throw new InvalidOperationException($"etcd on port {ClientPort} did not report healthy within {StartTimeout.TotalSeconds} s:\n{RecentOutput()}");
    }

    /// <summary>Kills etcd by its process id (like a crash) and waits for it to exit; the data directory stays.</summary>
    public async Task StopAsync()
    {
        var process = _process;
        _process = null;
        if (process is null)
        {
            return;
        }

        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: false);
            }

            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            process.Dispose();
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        DeleteDataDir();
    }

    /// <summary>The last lines etcd printed, for failure messages.</summary>
    public string RecentOutput()
    {
        lock (_gate)
        {
            return string.Join('\n', _output);
        }
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>
    /// The etcd binary, or an exception saying why there is none: the reason scripts/test.sh recorded in
    /// <see cref="SetupErrorVariable"/> when installing etcd failed, else <see cref="InstallHint"/>.
    /// </summary>
    internal static string FindBinaryOrThrow()
    {
        if (Environment.GetEnvironmentVariable(SetupErrorVariable) is { Length: > 0 } reason)
        {
            throw new InvalidOperationException($"etcd could not be installed, so this etcd test cannot run: {reason}");
        }

        return FindBinary() ?? throw new InvalidOperationException(InstallHint);
    }

    private static string? FindBinary()
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/bin", "/usr/local/bin"]);
        return dirs.Select(d => Path.Combine(d, "etcd")).FirstOrDefault(System.IO.File.Exists);
    }

    private void Remember(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_gate)
        {
            _output.Enqueue(line);
            while (_output.Count > 40)
            {
                _output.Dequeue();
            }
        }
    }

    private void DeleteDataDir()
    {
        try
        {
            Directory.Delete(_dataDir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}

/// <summary>Tests that share one etcd and leave it running.</summary>
[CollectionDefinition(Name)]
public sealed class EtcdCollection : ICollectionFixture<EtcdFixture>
{
    /// <summary>The collection name.</summary>
    public const string Name = "etcd";
}

/// <summary>Tests that stop and restart their own etcd, so they cannot disturb the shared one.</summary>
[CollectionDefinition(Name)]
public sealed class EtcdOutageCollection : ICollectionFixture<EtcdFixture>
{
    /// <summary>The collection name.</summary>
    public const string Name = "etcd-outage";
}
