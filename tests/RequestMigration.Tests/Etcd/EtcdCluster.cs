using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using RequestMigration.Discovery.Etcd;

namespace RequestMigration.Tests.Etcd;

/// <summary>
/// A real etcd cluster on loopback: each member on free client and peer ports with its own temporary data
/// directory, and every member's peer traffic through a <see cref="PeerRelay"/>, so the test can cut one member
/// off from the others while it keeps running and serving clients. Members can also be killed and restarted.
/// Disposing kills every member by its process id and deletes the data directories.
/// </summary>
internal sealed class EtcdCluster : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(20);
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(1) };
    private readonly string _binary;

    private EtcdCluster(string binary, int size)
    {
        _binary = binary;
        var token = "rm-" + Guid.NewGuid().ToString("N")[..12];
        Members = [.. Enumerable.Range(0, size).Select(i => new Member(this, $"m{i}", token))];
        var cluster = string.Join(',', Members.Select(m => $"{m.Name}={m.Relay.Url.ToString().TrimEnd('/')}"));
        foreach (var m in Members)
        {
            m.InitialCluster = cluster;
        }
    }

    public IReadOnlyList<Member> Members { get; }

    /// <summary>Starts a new cluster of <paramref name="size"/> members and waits until every member reports healthy (a leader is elected).</summary>
    public static async Task<EtcdCluster> StartAsync(int size = 3)
    {
        var binary = EtcdFixture.FindBinaryOrThrow();

        // A free port can be taken between picking it and etcd binding it: start over a few times.
        for (var attempt = 1; ; attempt++)
        {
            var cluster = new EtcdCluster(binary, size);
            try
            {
                foreach (var m in cluster.Members)
                {
                    m.Launch();
                }

                await cluster.WaitHealthyAsync(StartTimeout);
                return cluster;
            }
            catch (InvalidOperationException) when (attempt < 3)
            {
                await cluster.DisposeAsync();
            }
        }
    }

    /// <summary>Store options listing the given members' client URLs in that order, with watch retries fast enough for tests.</summary>
    public EtcdStoreOptions Options(params int[] members) => new()
    {
        Endpoints = [.. (members.Length == 0 ? Enumerable.Range(0, Members.Count) : members).Select(i => Members[i].ClientUrl)],
        WatchRetryInitialDelay = TimeSpan.FromMilliseconds(100),
        WatchRetryMaxDelay = TimeSpan.FromMilliseconds(500),
    };

    /// <summary>Waits until every running member answers /health with true.</summary>
    public async Task WaitHealthyAsync(TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout)
        {
            var exited = Members.FirstOrDefault(m => m.HasExited);
            if (exited is not null)
            {
                throw new InvalidOperationException($"etcd member {exited.Name} exited while starting:\n{exited.RecentOutput()}");
            }

            var healthy = true;
            foreach (var m in Members.Where(m => m.IsRunning))
            {
                healthy &= await m.IsHealthyAsync();
            }

            if (healthy)
            {
                return;
            }

            await Task.Delay(50);
        }

        throw new InvalidOperationException($"the etcd cluster did not report healthy within {timeout.TotalSeconds} s:\n{Describe()}");
    }

    /// <summary>The index of the member every running member names as leader; -1 when they do not agree.</summary>
    public async Task<int> LeaderAsync()
    {
        var running = Members.Where(m => m.IsRunning).ToList();
        var status = new List<(Member Member, string Id, string Leader)>();
        foreach (var m in running)
        {
            var (id, leader) = await m.StatusAsync();
            status.Add((m, id, leader));
        }

        var leaders = status.Select(s => s.Leader).Distinct().ToList();
        if (leaders.Count != 1 || leaders[0] is "" or "0")
        {
            return -1;
        }

        return status.FirstOrDefault(s => s.Id == leaders[0]).Member?.Index ?? -1;
    }

    /// <summary>Whether member <paramref name="index"/> currently knows a leader (from its own status).</summary>
    public async Task<bool> HasLeaderAsync(int index)
    {
        var (_, leader) = await Members[index].StatusAsync();
        return leader is not ("" or "0");
    }

    /// <summary>
    /// Cuts member <paramref name="index"/> off from its peers (both directions) while it keeps running and
    /// serving clients on its client port: a network partition.
    /// </summary>
    public void Isolate(int index)
    {
        var victim = Members[index];
        victim.Relay.RefuseAll();
        foreach (var m in Members.Where(m => m != victim))
        {
            m.Relay.Isolate(victim.Pid);
        }
    }

    /// <summary>Ends every partition.</summary>
    public void Heal()
    {
        foreach (var m in Members)
        {
            m.Relay.Heal();
        }
    }

    public string Describe()
    {
        var sb = new StringBuilder();
        foreach (var m in Members)
        {
            sb.Append(CultureInfo.InvariantCulture, $"--- {m.Name} (client {m.ClientPort}, peer {m.PeerPort}, relay {m.Relay.Port}, running {m.IsRunning})\n{m.RecentOutput()}\n");
        }

        return sb.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        // Every member is killed and its data deleted even if a step for another one fails.
        var errors = new List<Exception>();
        foreach (var m in Members)
        {
            foreach (var step in new Func<Task>[] { m.StopAsync, async () => await m.Relay.DisposeAsync(), () => Task.Run(m.DeleteDataDir) })
            {
                try
                {
                    await step();
                }
                catch (Exception ex)
                {
                    errors.Add(ex);
                }
            }
        }

        _http.Dispose();
        if (errors.Count > 0)
        {
            throw new AggregateException("stopping the etcd cluster", errors);
        }
    }

    /// <summary>One member: its process, ports, relay and data directory.</summary>
    internal sealed class Member
    {
        private readonly EtcdCluster _cluster;
        private readonly string _token;
        private readonly Queue<string> _output = new();
        private readonly Lock _gate = new();
        private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "rm-etcd-" + Guid.NewGuid().ToString("N"));
        private Process? _process;

        public Member(EtcdCluster cluster, string name, string token)
        {
            _cluster = cluster;
            _token = token;
            Name = name;
            Index = int.Parse(name[1..], CultureInfo.InvariantCulture);
            ClientPort = EtcdFixture.FreePort();
            PeerPort = EtcdFixture.FreePort();
            Relay = new PeerRelay(PeerPort, () => [.. cluster.Members.Where(m => m.IsRunning).Select(m => m.Pid)]);
        }

        public string Name { get; }

        public int Index { get; }

        public int ClientPort { get; }

        public int PeerPort { get; }

        public PeerRelay Relay { get; }

        public string InitialCluster { get; set; } = string.Empty;

        public Uri ClientUrl => new($"http://127.0.0.1:{ClientPort}");

        public bool IsRunning => _process is { HasExited: false };

        public bool HasExited => _process is { HasExited: true };

        public int Pid => _process?.Id ?? -1;

        /// <summary>Starts the process (again, on the same ports and data) without waiting for it.</summary>
        public void Launch()
        {
            if (IsRunning)
            {
                return;
            }

            var psi = new ProcessStartInfo(_cluster._binary)
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

            var client = ClientUrl.ToString().TrimEnd('/');
            string[] args =
            [
                "--name", Name,
                "--data-dir", _dataDir,
                "--listen-client-urls", client,
                "--advertise-client-urls", client,
                "--listen-peer-urls", $"http://127.0.0.1:{PeerPort}",
                "--initial-advertise-peer-urls", Relay.Url.ToString().TrimEnd('/'),
                "--initial-cluster", InitialCluster,
                "--initial-cluster-token", _token,
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
        }

        /// <summary>Kills the process by its id (like a crash) and waits for it to exit; the data directory stays.</summary>
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

        public async Task<bool> IsHealthyAsync()
        {
            try
            {
                var body = await _cluster._http.GetStringAsync(new Uri(ClientUrl, "/health"));
                return body.Contains("\"health\":\"true\"", StringComparison.Ordinal);
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                return false;
            }
        }

        /// <summary>This member's id and the id of the leader it knows ("0" when none), from etcd's JSON gateway.</summary>
        public async Task<(string Member, string Leader)> StatusAsync()
        {
            try
            {
                using var content = new StringContent("{}", Encoding.UTF8, "application/json");
                using var response = await _cluster._http.PostAsync(new Uri(ClientUrl, "/v3/maintenance/status"), content);
                using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                var member = doc.RootElement.GetProperty("header").GetProperty("member_id").GetString() ?? string.Empty;
                var leader = doc.RootElement.TryGetProperty("leader", out var l) ? l.GetString() ?? "0" : "0";
                return (member, leader);
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException)
            {
                return (string.Empty, "0");
            }
        }

        public string RecentOutput()
        {
            lock (_gate)
            {
                return string.Join('\n', _output);
            }
        }

        public void DeleteDataDir()
        {
            try
            {
                Directory.Delete(_dataDir, recursive: true);
            }
            catch (DirectoryNotFoundException)
            {
            }
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
                while (_output.Count > 30)
                {
                    _output.Dequeue();
                }
            }
        }
    }
}
