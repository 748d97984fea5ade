using System.Diagnostics;
using System.Text;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>
/// One example program started as <c>dotnet &lt;dll&gt;</c> with an explicit environment. Output is captured
/// line by line as it arrives; the process is killed (with its tree) on dispose if it is still running.
/// </summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    /// <summary>Variables removed from the inherited environment so the test machine's settings cannot leak in.</summary>
    private static readonly string[] ScrubbedPrefixes = ["DYN_", "ETCD_", "CLIENT_", "SERVER_NAME", "FAILURE_MODE", "ITEM_DELAY_MS", "CONNECTION_SWAP_", "RequestMigration__", "Serilog__"];

    private readonly Process _process;
    private readonly Lock _gate = new();
    private readonly List<string> _stdout = [];
    private readonly List<string> _stderr = [];

    private ChildProcess(string name, Process process)
    {
        Name = name;
        _process = process;
    }

    public string Name { get; }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public string Stdout
    {
        get
        {
            lock (_gate)
            {
                return string.Join('\n', _stdout);
            }
        }
    }

    public string Stderr
    {
        get
        {
            lock (_gate)
            {
                return string.Join('\n', _stderr);
            }
        }
    }

    public IReadOnlyList<string> StdoutLines
    {
        get
        {
            lock (_gate)
            {
                return [.. _stdout];
            }
        }
    }

    /// <summary>Everything captured so far, for failure messages.</summary>
    public string Describe()
    {
        var exit = _process.HasExited ? $"exit code {_process.ExitCode}" : "still running";
        return $"--- {Name} (pid {_process.Id}, {exit}) stdout ---\n{Stdout}\n--- {Name} stderr ---\n{Stderr}\n";
    }

    /// <param name="name">Name for messages.</param>
    /// <param name="dll">The program.</param>
    /// <param name="environment">Variables added to the scrubbed environment.</param>
    /// <param name="withoutQuic">Run it as on a machine without libmsquic (see <see cref="WithoutQuic"/>).</param>
    /// <param name="arguments">Command-line arguments after the program.</param>
    public static ChildProcess Start(string name, string dll, IReadOnlyDictionary<string, string> environment, bool withoutQuic = false, IReadOnlyList<string>? arguments = null)
    {
        var psi = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = false,
            UseShellExecute = false,
            CreateNoWindow = true,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        psi.ArgumentList.Add(dll);
        foreach (var a in arguments ?? [])
        {
            psi.ArgumentList.Add(a);
        }

        if (withoutQuic)
        {
            WithoutQuic.Wrap(psi);
        }

        foreach (var key in psi.Environment.Keys.ToList())
        {
            if (ScrubbedPrefixes.Any(p => key.StartsWith(p, StringComparison.OrdinalIgnoreCase)))
            {
                psi.Environment.Remove(key);
            }
        }

        foreach (var (key, value) in environment)
        {
            psi.Environment[key] = value;
        }

        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var child = new ChildProcess(name, process);
        process.OutputDataReceived += (_, e) => child.Append(child._stdout, e.Data);
        process.ErrorDataReceived += (_, e) => child.Append(child._stderr, e.Data);
        if (!process.Start())
        {
            throw new InvalidOperationException($"could not start {name}: {psi.FileName} {dll}");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>Waits until a stdout or stderr line contains <paramref name="text"/>; fails if the process exits first or time runs out.</summary>
    public async Task<string> WaitForLineAsync(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            string? hit;
            lock (_gate)
            {
                hit = _stdout.Concat(_stderr).FirstOrDefault(l => l.Contains(text, StringComparison.Ordinal));
            }

            if (hit is not null)
            {
                return hit;
            }

            if (_process.HasExited)
            {
                // Let the last lines arrive, then look once more.
                _process.WaitForExit();
                lock (_gate)
                {
                    hit = _stdout.Concat(_stderr).FirstOrDefault(l => l.Contains(text, StringComparison.Ordinal));
                }

                return hit ?? throw new TimeoutException($"{Name} exited before printing '{text}'\n{Describe()}");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{Name} did not print '{text}' within {timeout.TotalSeconds:0.#} s\n{Describe()}");
            }

            await Task.Delay(25);
        }
    }

    /// <summary>Waits for the process to exit and for its output to be drained; returns the exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{Name} did not exit within {timeout.TotalSeconds:0.#} s\n{Describe()}");
        }

        // The no-argument overload also waits for the redirected streams to reach end of file.
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>SIGKILL, as <c>kill -9</c>: the process gets no chance to deregister.</summary>
    public async Task KillHardAsync()
    {
        _process.Kill(entireProcessTree: false);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await _process.WaitForExitAsync(cts.Token);
    }

    /// <summary>Sends SIGTERM (what a service manager sends to stop a process gracefully).</summary>
    public Task SendSigtermAsync() => SendSignalAsync("TERM");

    /// <summary>Sends SIGINT (what Ctrl+C in a terminal sends).</summary>
    public Task SendSigintAsync() => SendSignalAsync("INT");

    /// <summary>Sends a signal with <c>kill -{signal}</c> (<c>STOP</c> freezes the process with its sockets open; <c>CONT</c> resumes it).</summary>
    public async Task SendSignalAsync(string signal)
    {
        var psi = new ProcessStartInfo("kill") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("-" + signal);
        psi.ArgumentList.Add(_process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var kill = Process.Start(psi) ?? throw new InvalidOperationException("could not start 'kill'");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await kill.WaitForExitAsync(cts.Token);
        if (kill.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -{signal} {_process.Id} failed: {await kill.StandardError.ReadToEndAsync()}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                try
                {
                    await _process.WaitForExitAsync(cts.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
        finally
        {
            _process.Dispose();
        }
    }

    private static string DotnetHost()
    {
        // Set by the dotnet CLI for the processes it starts (dotnet test, dotnet run).
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host))
        {
            return host;
        }

        if (Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            return self;
        }

        return "dotnet";
    }

    private void Append(List<string> lines, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_gate)
        {
            lines.Add(line);
        }
    }
}

/// <summary>
/// Runs a child process as if libmsquic were not installed, on a machine where it is: the process gets a
/// private mount namespace in which the library file is covered by <c>/dev/null</c>, so .NET's dlopen fails
/// and <c>QuicConnection.IsSupported</c> is false. Needs root (or user namespaces) and <c>unshare</c>; tests
/// skip with <see cref="SkipReason"/> when that is not possible. Where libmsquic is absent anyway, the
/// process runs unchanged.
/// </summary>
internal static class WithoutQuic
{
    private static readonly Lazy<string?> LibraryPath = new(FindLibrary);
    private static readonly Lazy<string?> Unsupported = new(Probe);

    /// <summary>Why QUIC cannot be hidden here; null when it can (or when there is nothing to hide).</summary>
    public static string? SkipReason => Unsupported.Value;

    public static void Wrap(ProcessStartInfo psi)
    {
        if (LibraryPath.Value is not { } lib)
        {
            return;
        }

        var program = psi.FileName;
        var args = psi.ArgumentList.ToList();
        psi.FileName = "unshare";
        psi.ArgumentList.Clear();
        foreach (var a in new[] { "-m", "--propagation", "private", "sh", "-c", "mount --bind /dev/null \"$0\" && exec \"$@\"", lib, program })
        {
            psi.ArgumentList.Add(a);
        }

        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
    }

    private static string? FindLibrary()
    {
        foreach (var dir in new[] { "/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu" })
        {
            var candidate = Path.Combine(dir, "libmsquic.so.2");
            if (File.Exists(candidate))
            {
                return new FileInfo(candidate).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? candidate;
            }
        }

        return null;
    }

    private static string? Probe()
    {
        if (LibraryPath.Value is null)
        {
            return null;
        }

        try
        {
            var psi = new ProcessStartInfo("unshare") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in new[] { "-m", "--propagation", "private", "sh", "-c", "mount --bind /dev/null \"$0\"", LibraryPath.Value })
            {
                psi.ArgumentList.Add(a);
            }

            using var p = Process.Start(psi)!;
            p.WaitForExit(10_000);
            return p.ExitCode == 0 ? null : $"cannot hide libmsquic from a child process here (unshare/mount failed: {p.StandardError.ReadToEnd().Trim()})";
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return $"cannot hide libmsquic from a child process here ({ex.Message})";
        }
    }
}
