using RequestMigration.LoadBalancing;
using System.Diagnostics;
using RequestMigration.Bench.Proto;
using RequestMigration.Routing;
using RequestMigration.Transport;

namespace RequestMigration.Bench;

/// <summary>
/// Figure 2: short requests (one request, 10 items, end) from 32 (and, as a second figure, 256) concurrent callers
/// over 2 server instances. Ours: PushRouter in round robin; on TCP, streams multiplexed (rm/2) over a pool of
/// TCP+TLS connections per instance that grows with load, on QUIC, one stream per request over one connection.
/// gRPC: one channel with gRPC's client-side round_robin load balancing over the same two servers
/// (Grpc.Net.Client static resolver + RoundRobinConfig), i.e. one HTTP/2 connection per server carrying many calls.
/// </summary>
/// <remarks>
/// After a warm-up of each side, ours and gRPC are timed in alternating rounds; the rate is all requests
/// completed inside the rounds over their total length, and p50/p99 are over the requests started inside them.
/// </remarks>
internal static class RequestRate
{
    private const int Servers = 2;

    private sealed class Side(string name, Func<Task> request)
    {
        public string Name { get; } = name;

        public Func<Task> Request { get; } = request;

        public long Completed { get; set; }

        public double Seconds { get; set; }

        public TimeSpan Cpu { get; set; }

        public List<long> Latencies { get; } = [];
    }

    public static async Task RunAsync(TransportKind transport, BenchSettings settings, int callers, RequestRateFigures figures)
    {
        figures.Callers = callers;
        await using var ours = await OurCluster.StartAsync(transport, Servers);
        await using var grpc = await GrpcCluster.StartAsync(Servers);
        var router = await ours.CreateRouterAsync(new RouterOptions { LoadBalancingPolicy = LoadBalancingPolicies.RoundRobin });
        using var channel = grpc.RoundRobinChannel();
        var client = new BenchService.BenchServiceClient(channel);

        Side[] sides =
        [
            new("ours", () => OneOursAsync(router, settings.RequestItems)),
            new("grpc", () => OneGrpcAsync(client, settings.RequestItems)),
        ];
        foreach (var side in sides)
        {
            await DriveAsync(callers, settings.RequestWarmup, side.Request, null);
        }

        BenchEndpoint.Served.Clear();
        var grpcBefore = grpc.Counters.Select(c => c.Calls).ToArray();
        for (var round = 0; round < settings.RequestRounds; round++)
        {
            for (var k = 0; k < sides.Length; k++)
            {
                var side = sides[(round + k) % sides.Length];
                GC.Collect();
                GC.WaitForPendingFinalizers();
                var cpu0 = Cpu.ProcessTime();
                side.Completed += await DriveAsync(callers, settings.RequestRoundDuration, side.Request, side.Latencies);
                side.Cpu += Cpu.ProcessTime() - cpu0;
                side.Seconds += settings.RequestRoundDuration.TotalSeconds;
            }
        }

        var oursServed = BenchEndpoint.Served.Values.ToList();
        var grpcServed = grpc.Counters.Select((c, i) => c.Calls - grpcBefore[i]).ToList();
        if (oursServed.Count < Servers || oursServed.Any(s => s == 0) || grpcServed.Any(s => s == 0))
        {
            throw new InvalidOperationException($"load was not spread over both servers (ours: {string.Join(", ", oursServed)}; grpc: {string.Join(", ", grpcServed)})");
        }

        var (o, g) = (sides[0], sides[1]);
        figures.RatePerSec = o.Completed / o.Seconds;
        figures.LatencyMsP50 = Stats.PercentileMs(o.Latencies, 50);
        figures.LatencyMsP99 = Stats.PercentileMs(o.Latencies, 99);
        figures.CpuUsPerRequest = o.Cpu.TotalMicroseconds / o.Completed;
        figures.GrpcRatePerSec = g.Completed / g.Seconds;
        figures.GrpcLatencyMsP50 = Stats.PercentileMs(g.Latencies, 50);
        figures.GrpcLatencyMsP99 = Stats.PercentileMs(g.Latencies, 99);
        figures.GrpcCpuUsPerRequest = g.Cpu.TotalMicroseconds / g.Completed;
        Console.Error.WriteLine($"  request rate ({callers} callers) ours/{transport}: {figures.RatePerSec:N0} req/s, p50 {figures.LatencyMsP50:0.000} ms, p99 {figures.LatencyMsP99:0.000} ms, {figures.CpuUsPerRequest:0.0} us CPU/request; per instance: {string.Join(", ", oursServed)}");
        Console.Error.WriteLine($"  request rate ({callers} callers) grpc: {figures.GrpcRatePerSec:N0} req/s, p50 {figures.GrpcLatencyMsP50:0.000} ms, p99 {figures.GrpcLatencyMsP99:0.000} ms, {figures.GrpcCpuUsPerRequest:0.0} us CPU/request; per server: {string.Join(", ", grpcServed)}");
    }

    /// <summary>
    /// Runs <paramref name="callers"/> closed loops for <paramref name="duration"/>; returns the requests that
    /// completed within it and adds the latency of each (when a list is given).
    /// </summary>
    private static async Task<long> DriveAsync(int callers, TimeSpan duration, Func<Task> request, List<long>? latencies)
    {
        var end = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var perCaller = new List<long>[callers];
        var completed = new long[callers];
        var tasks = Enumerable.Range(0, callers).Select(i => Task.Run(async () =>
        {
            var mine = perCaller[i] = new List<long>(4096);
            while (true)
            {
                var t0 = Stopwatch.GetTimestamp();
                if (t0 >= end)
                {
                    return;
                }

                await request();
                var t1 = Stopwatch.GetTimestamp();
                mine.Add(t1 - t0);
                if (t1 <= end)
                {
                    completed[i]++;
                }
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        latencies?.AddRange(perCaller.SelectMany(l => l));
        return completed.Sum();
    }

    private static async Task OneOursAsync(PushRouter<StreamRequest, string> router, int items)
    {
        var count = 0;
        await foreach (var item in router.GenerateAsync(new StreamRequest(items)))
        {
            if (item.IsError)
            {
                throw new InvalidOperationException($"request failed: {item.Comment}");
            }

            count++;
        }

        if (count != items)
        {
            throw new InvalidOperationException($"request returned {count} items, expected {items}");
        }
    }

    private static async Task OneGrpcAsync(BenchService.BenchServiceClient client, int items)
    {
        using var call = client.Stream(new Proto.StreamRequest { Count = items });
        var count = 0;
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            count++;
        }

        if (count != items)
        {
            throw new InvalidOperationException($"gRPC call returned {count} items, expected {items}");
        }
    }
}
