using System.Diagnostics;
using System.Globalization;
using Grpc.Net.Client;
using RequestMigration.Bench.Proto;
using RequestMigration.Discovery.Memory;
using RequestMigration.Serialization;
using RequestMigration.Transport;
using RequestMigration.Wire;

namespace RequestMigration.Bench;

/// <summary>
/// Figure 5: memory per idle stream. A separate server process (this program with <see cref="ChildFlag"/>)
/// serves an endpoint whose handler just waits on its cancellation token; this process opens N streams to it
/// and leaves them idle. Server working set after a full GC, before and after, divided by N. Running the server
/// apart keeps the client's half of each stream out of the figure (the client's own growth is reported
/// separately) and keeps each process under the open-files limit when streams do not share connections (TCP with
/// multiplexing off holds a TCP+TLS connection per stream; multiplexed TCP and QUIC hold a few connections in all).
/// gRPC is measured the same way for comparison: its calls
/// are HTTP/2 streams multiplexed over a few connections (Kestrel allows 100 streams per connection by default,
/// and the client opens more connections as needed).
/// </summary>
internal static class IdleStreamMemory
{
    public const string ChildFlag = "--idle-server";

    private const string Grpc = "grpc";

    /// <summary>File descriptors kept in reserve for the runtime, pipes, listeners and the like.</summary>
    private const int ReservedDescriptors = 512;

    private sealed record Growth(double ServerBytes, double ServerManagedBytes, double ClientBytes);

    public static async Task RunAsync(TransportKind transport, BenchSettings settings, TransportFigures figures, long? openFilesLimit)
    {
        var count = settings.IdleStreams;
        if (openFilesLimit is { } limit && limit - ReservedDescriptors < count)
        {
            count = (int)Math.Max(100, limit - ReservedDescriptors);
            Console.Error.WriteLine($"  idle streams: open-files limit (ulimit -n) is {limit}; using {count} streams instead of {settings.IdleStreams}");
        }

        figures.IdleStreams = count;
        var side = transport == TransportKind.Quic ? TransportKinds.Quic : TransportKinds.Tcp;
        var ours = await MeasureAsync(side, count);
        figures.BytesPerIdleStream = ours.ServerBytes;
        figures.ManagedBytesPerIdleStream = ours.ServerManagedBytes;
        figures.ClientBytesPerIdleStream = ours.ClientBytes;

        var grpc = await MeasureAsync(Grpc, count);
        figures.GrpcBytesPerIdleStream = grpc.ServerBytes;
        figures.GrpcManagedBytesPerIdleStream = grpc.ServerManagedBytes;
        figures.GrpcClientBytesPerIdleStream = grpc.ClientBytes;
    }

    /// <summary>The child side: serve the idle endpoint and answer "active", "stats" and "quit" on stdin.</summary>
    public static async Task<int> ServeAsync(string side)
    {
        IAsyncDisposable host;
        string address;
        if (side == Grpc)
        {
            var grpc = await GrpcCluster.StartAsync(servers: 1);
            (host, address) = (grpc, $"127.0.0.1:{grpc.Ports[0]}");
        }
        else
        {
            var ours = await OurCluster.StartAsync(TransportKinds.Parse(side), servers: 1);
            (host, address) = (ours, ours.Servers[0].Address);
        }

        await using (host)
        {
            Console.WriteLine($"READY {side} {address}");
            while (await Console.In.ReadLineAsync() is { } line)
            {
                switch (line.Trim())
                {
                    case "active":
                        Console.WriteLine($"ACTIVE {BenchEndpoint.IdleActive}");
                        break;
                    case "stats":
                        var (ws, managed) = LocalStats();
                        Console.WriteLine($"STATS {BenchEndpoint.IdleActive} {ws} {managed}");
                        break;
                    case "quit":
                        return 0;
                }
            }
        }

        return 0;
    }

    private static async Task<Growth> MeasureAsync(string side, int count)
    {
        using var child = StartChild(side);
        try
        {
            var ready = await ReadReplyAsync(child, "READY");
            await using var client = side == Grpc ? (IIdleClient)new GrpcIdleClient(ready[2]) : new OurIdleClient(side, ready[2]);

            // Warm both processes up (JIT, pools, TLS) with a few streams, then close them again.
            await CloseAllAsync(await client.OpenAsync(200));
            await WaitActiveAsync(child, 0);

            var serverBefore = await ServerStatsAsync(child);
            var clientBefore = LocalStats();
            var streams = await client.OpenAsync(count);
            await WaitActiveAsync(child, count);
            var serverAfter = await ServerStatsAsync(child);
            var clientAfter = LocalStats();
            var growth = new Growth(
                (serverAfter.WorkingSet - serverBefore.WorkingSet) / (double)count,
                (serverAfter.Managed - serverBefore.Managed) / (double)count,
                (clientAfter.WorkingSet - clientBefore.WorkingSet) / (double)count);
            Console.Error.WriteLine($"  idle streams {side}: {count} streams; server +{growth.ServerBytes:N0} B/stream working set (+{growth.ServerManagedBytes:N0} managed), client +{growth.ClientBytes:N0} B/stream");
            await CloseAllAsync(streams);
            return growth;
        }
        finally
        {
            await StopChildAsync(child);
        }
    }

    private static (long WorkingSet, long Managed) LocalStats()
    {
        // Full, compacting, twice around finalizers: what is left is what the streams really hold.
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        using var self = Process.GetCurrentProcess();
        self.Refresh();
        return (self.WorkingSet64, GC.GetTotalMemory(forceFullCollection: false));
    }

    private static async Task CloseAllAsync(IReadOnlyList<IAsyncDisposable> streams)
    {
        foreach (var s in streams)
        {
            await s.DisposeAsync();
        }
    }

    private static Process StartChild(string side)
    {
        var exe = Environment.ProcessPath ?? throw new InvalidOperationException("cannot find this program's path to start the idle server");
        var psi = new ProcessStartInfo(exe)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
        };
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet")
        {
            // Started as `dotnet RequestMigration.Bench.dll`: start the child the same way.
            psi.ArgumentList.Add(typeof(IdleStreamMemory).Assembly.Location);
        }

        psi.ArgumentList.Add(ChildFlag);
        psi.ArgumentList.Add(side);
        return Process.Start(psi) ?? throw new InvalidOperationException("idle server did not start");
    }

    private static async Task StopChildAsync(Process child)
    {
        try
        {
            if (!child.HasExited)
            {
                await child.StandardInput.WriteLineAsync("quit");
                await child.StandardInput.FlushAsync();
                using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(15));
                await child.WaitForExitAsync(wait.Token);
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or InvalidOperationException)
        {
            Console.Error.WriteLine($"  idle server (pid {child.Id}) did not quit ({ex.Message}); killing it");
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync();
        }
    }

    private static async Task<string[]> ReadReplyAsync(Process child, string tag)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (true)
        {
            var line = await child.StandardOutput.ReadLineAsync(timeout.Token)
                ?? throw new InvalidOperationException($"idle server exited (code {(child.HasExited ? child.ExitCode : -1)}) before answering {tag}");
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 0 && parts[0] == tag)
            {
                return parts;
            }
        }
    }

    private static async Task<(long WorkingSet, long Managed)> ServerStatsAsync(Process child)
    {
        await child.StandardInput.WriteLineAsync("stats");
        await child.StandardInput.FlushAsync();
        var reply = await ReadReplyAsync(child, "STATS");
        return (long.Parse(reply[2], CultureInfo.InvariantCulture), long.Parse(reply[3], CultureInfo.InvariantCulture));
    }

    private static async Task WaitActiveAsync(Process child, int expected)
    {
        var deadline = Stopwatch.GetTimestamp() + (120 * Stopwatch.Frequency);
        while (true)
        {
            await child.StandardInput.WriteLineAsync("active");
            await child.StandardInput.FlushAsync();
            var active = int.Parse((await ReadReplyAsync(child, "ACTIVE"))[1], CultureInfo.InvariantCulture);
            if (active == expected)
            {
                return;
            }

            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException($"idle server has {active} active streams, expected {expected}");
            }

            await Task.Delay(100);
        }
    }

    private interface IIdleClient : IAsyncDisposable
    {
        Task<IReadOnlyList<IAsyncDisposable>> OpenAsync(int count);
    }

    /// <summary>Our streams, opened on the raw transport: a request frame to the idle endpoint, then nothing.</summary>
    private sealed class OurIdleClient : IIdleClient
    {
        private readonly MemoryKeyValueStore _store = new();
        private readonly RequestMigrationRuntime _runtime;
        private readonly IClientConnector _connector;
        private readonly string _address;

        public OurIdleClient(string transport, string address)
        {
            _runtime = new RequestMigrationRuntime(OurCluster.Options(TransportKinds.Parse(transport)), store: _store);
            _connector = _runtime.Transports.ConnectorFor(transport);
            _address = address;
        }

        public async Task<IReadOnlyList<IAsyncDisposable>> OpenAsync(int count)
        {
            var streams = new ClientStream[count];

            // Bounded parallelism: thousands of simultaneous TLS handshakes would only overflow the listen backlog.
            await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, ct) =>
            {
                var stream = await _connector.OpenAsync(_address, ct);
                var output = stream.Writer.BeginFrame(FrameType.Request);
                new RequestHeader(BenchEndpoint.Idle.Path, Guid.NewGuid().ToString("N"), 1, ReadOnlyMemory<byte>.Empty).Write(output);
                JsonPayloadSerializer.Default.Serialize(output, new StreamRequest(0));
                stream.Writer.EndFrame();
                await stream.Writer.FlushAsync(ct);

                // As RequestAttempt does once its request is out: the write buffer goes back to the pool.
                stream.Writer.Trim();
                streams[i] = stream;
            });
            return streams;
        }

        public async ValueTask DisposeAsync()
        {
            await _runtime.DisposeAsync();
            await _store.DisposeAsync();
        }
    }

    /// <summary>gRPC calls to the Idle method over one channel (the handler opens connections as streams need).</summary>
    private sealed class GrpcIdleClient(string address) : IIdleClient
    {
        private readonly GrpcChannel _channel = GrpcCluster.ChannelTo($"https://{address}");

        public Task<IReadOnlyList<IAsyncDisposable>> OpenAsync(int count)
        {
            var client = new BenchService.BenchServiceClient(_channel);
            var calls = new IAsyncDisposable[count];
            for (var i = 0; i < count; i++)
            {
                calls[i] = new CallHandle(client.Idle(new Proto.StreamRequest()));
            }

            return Task.FromResult<IReadOnlyList<IAsyncDisposable>>(calls);
        }

        public ValueTask DisposeAsync()
        {
            _channel.Dispose();
            return ValueTask.CompletedTask;
        }

        private sealed class CallHandle(IDisposable call) : IAsyncDisposable
        {
            public ValueTask DisposeAsync()
            {
                // Disposing a running call cancels it: the server's token fires and its handler returns.
                call.Dispose();
                return ValueTask.CompletedTask;
            }
        }
    }
}
