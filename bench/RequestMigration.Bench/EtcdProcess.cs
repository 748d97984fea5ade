using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace RequestMigration.Bench;

/// <summary>
/// A private etcd for the propagation figure: free loopback ports, a temporary data directory, stopped by its
/// PID and cleaned up on dispose. Never touches a system etcd on 2379/2380.
/// </summary>
internal sealed class EtcdProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _dataDir;

    private EtcdProcess(Process process, string dataDir, Uri clientUrl)
    {
        _process = process;
        _dataDir = dataDir;
        ClientUrl = clientUrl;
    }

    public Uri ClientUrl { get; }

    /// <summary>The etcd binary on PATH, or null.</summary>
    public static string? FindBinary() =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, "etcd"))
            .FirstOrDefault(File.Exists);

    public static async Task<EtcdProcess> StartAsync(string binary)
    {
        var client = FreePort();
        var peer = FreePort();
        var dataDir = Directory.CreateTempSubdirectory("rm-bench-etcd-").FullName;
        var psi = new ProcessStartInfo(binary)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[]
        {
            "--name", "rm-bench",
            "--data-dir", dataDir,
            "--listen-client-urls", $"http://127.0.0.1:{client}",
            "--advertise-client-urls", $"http://127.0.0.1:{client}",
            "--listen-peer-urls", $"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", $"http://127.0.0.1:{peer}",
            "--initial-cluster", $"rm-bench=http://127.0.0.1:{peer}",
            "--logger", "zap",
            "--log-level", "error",
        })
        {
            psi.ArgumentList.Add(arg);
        }

        var process = Process.Start(psi) ?? throw new InvalidOperationException("etcd did not start");


        // Drain its output so a chatty etcd can never block on a full pipe.
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var etcd = new EtcdProcess(process, dataDir, new Uri($"http://127.0.0.1:{client}"));

        // If the bench is interrupted (Ctrl+C) or exits without reaching DisposeAsync, etcd must not outlive it.
        AppDomain.CurrentDomain.ProcessExit += etcd.OnExit;
        Console.CancelKeyPress += etcd.OnExit;
        try
        {
            await etcd.WaitHealthyAsync(TimeSpan.FromSeconds(15));
        }
        catch
        {
            await etcd.DisposeAsync();
            throw;
        }

        return etcd;
    }

    public async ValueTask DisposeAsync()
    {
        AppDomain.CurrentDomain.ProcessExit -= OnExit;
        Console.CancelKeyPress -= OnExit;
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            await _process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
        }
        catch (Exception ex) when (ex is InvalidOperationException or OperationCanceledException or System.ComponentModel.Win32Exception)
        {
            Console.Error.WriteLine($"  etcd (pid {_process.Id}) did not stop cleanly: {ex.Message}");
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_dataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private async Task WaitHealthyAsync(TimeSpan timeout)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(1) };
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"etcd exited with code {_process.ExitCode} during start-up");
            }

            try
            {
                using var response = await http.GetAsync(new Uri(ClientUrl, "/health"));
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
            }

            await Task.Delay(50);
        }

        throw new TimeoutException($"etcd at {ClientUrl} not healthy within {timeout.TotalSeconds:0} s");
    }

    private void OnExit(object? sender, EventArgs e)
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
        }
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
