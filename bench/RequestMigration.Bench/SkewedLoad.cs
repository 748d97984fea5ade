using System.Diagnostics;
using System.Text.Json.Serialization;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.LoadBalancing;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Transport;

namespace RequestMigration.Bench;

/// <summary>
/// Load balancing under skew: two fast instances and one ten times slower, 32 callers, request latency p99
/// per policy. Each instance has a fixed item rate shared by all its streams (as a model worker has a fixed
/// token rate shared by its batch), so its latency grows with its queue; the slow one's rate is a tenth of
/// the others'. Round robin keeps sending it a third of the requests; load-aware policies send it fewer.
/// The policies run in alternating rounds, so background load hits them alike.
/// </summary>
internal static class SkewedLoad
{
    private const int Callers = 32;
    private const int ItemsPerRequest = 10;
    private const double FastItemsPerSecond = 5000;
    private const double SlowItemsPerSecond = FastItemsPerSecond / 10;

    private static readonly EndpointId Endpoint = EndpointId.Parse("bench/backend/skewed");

    private static readonly string[] Policies = [LoadBalancingPolicies.RoundRobin, LoadBalancingPolicies.LeastConnections, LoadBalancingPolicies.PowerOfTwoChoices];

    public static async Task<SkewedLoadFigures> RunAsync(BenchSettings settings)
    {
        await using var store = new MemoryKeyValueStore();
        await using var runtime = new RequestMigrationRuntime(OurCluster.Options(TransportKind.Tcp), store: store);
        var pacers = new[] { new Pacer(FastItemsPerSecond), new Pacer(FastItemsPerSecond), new Pacer(SlowItemsPerSecond) };
        foreach (var pacer in pacers)
        {
            await runtime.CreateServer().AddEndpoint<int, int>(Endpoint, pacer.StreamAsync).StartAsync();
        }

        var routers = new Dictionary<string, PushRouter<int, int>>();
        foreach (var policy in Policies)
        {
            var router = runtime.CreateRouter<int, int>(Endpoint, new RouterOptions { LoadBalancingPolicy = policy });
            await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10));
            while (router.Instances.Available.Count < pacers.Length)
            {
                await Task.Delay(5);
            }

            routers[policy] = router;
        }

        var latencies = Policies.ToDictionary(p => p, _ => new List<long>());
        var slowShare = Policies.ToDictionary(p => p, _ => (Slow: 0L, All: 0L));
        var warmup = settings.Quick ? TimeSpan.FromSeconds(1) : TimeSpan.FromSeconds(2);
        foreach (var policy in Policies)
        {
            await RoundAsync(routers[policy], pacers, warmup, []);
        }

        for (var round = 0; round < settings.SkewedRounds; round++)
        {
            foreach (var policy in Policies)
            {
                var slowBefore = pacers[2].Requests;
                var allBefore = pacers.Sum(p => p.Requests);
                await RoundAsync(routers[policy], pacers, settings.SkewedRoundDuration, latencies[policy]);
                var (slow, all) = slowShare[policy];
                slowShare[policy] = (slow + pacers[2].Requests - slowBefore, all + pacers.Sum(p => p.Requests) - allBefore);
                Console.Error.WriteLine($"  round {round + 1} {policy}: p99 so far {Stats.PercentileMs(latencies[policy], 99):0.0} ms");
            }
        }

        double Share(string p) => slowShare[p].All == 0 ? double.NaN : (double)slowShare[p].Slow / slowShare[p].All;
        return new SkewedLoadFigures
        {
            Callers = Callers,
            ItemsPerRequest = ItemsPerRequest,
            FastItemsPerSecond = FastItemsPerSecond,
            SlowItemsPerSecond = SlowItemsPerSecond,
            Requests = Policies.ToDictionary(p => p, p => latencies[p].Count),
            RoundRobinP99Ms = Stats.PercentileMs(latencies[LoadBalancingPolicies.RoundRobin], 99),
            LeastConnectionsP99Ms = Stats.PercentileMs(latencies[LoadBalancingPolicies.LeastConnections], 99),
            PowerOfTwoP99Ms = Stats.PercentileMs(latencies[LoadBalancingPolicies.PowerOfTwoChoices], 99),
            RoundRobinP50Ms = Stats.PercentileMs(latencies[LoadBalancingPolicies.RoundRobin], 50),
            LeastConnectionsP50Ms = Stats.PercentileMs(latencies[LoadBalancingPolicies.LeastConnections], 50),
            PowerOfTwoP50Ms = Stats.PercentileMs(latencies[LoadBalancingPolicies.PowerOfTwoChoices], 50),
            SlowShare = Policies.ToDictionary(p => p, Share),
        };
    }

    private static async Task RoundAsync(PushRouter<int, int> router, Pacer[] pacers, TimeSpan duration, List<long> latencies)
    {
        var until = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var perCaller = await Task.WhenAll(Enumerable.Range(0, Callers).Select(_ => Task.Run(async () =>
        {
            var mine = new List<long>();
            while (Stopwatch.GetTimestamp() < until)
            {
                var start = Stopwatch.GetTimestamp();
                var items = 0;
                await foreach (var item in router.GenerateAsync(ItemsPerRequest))
                {
                    if (item.IsError)
                    {
                        throw new InvalidOperationException($"skewed load: a request failed: {item.Comment}");
                    }

                    items++;
                }

                if (items != ItemsPerRequest)
                {
                    throw new InvalidOperationException($"skewed load: {items} of {ItemsPerRequest} items");
                }

                mine.Add(Stopwatch.GetTimestamp() - start);
            }

            return mine;
        })));

        // Let every instance's queue drain, so the next policy starts from idle instances.
        while (pacers.Any(p => p.Active > 0))
        {
            await Task.Delay(10);
        }

        foreach (var list in perCaller)
        {
            latencies.AddRange(list);
        }
    }

    /// <summary>An instance with a fixed item rate shared by all its streams: each item reserves the next free slot.</summary>
    private sealed class Pacer(double itemsPerSecond)
    {
        private readonly long _ticksPerItem = (long)(Stopwatch.Frequency / itemsPerSecond);
        private long _nextFree;
        private int _active;
        private long _requests;

        public int Active => Volatile.Read(ref _active);

        public long Requests => Interlocked.Read(ref _requests);

        public async IAsyncEnumerable<int> StreamAsync(int count, RequestContext context)
        {
            Interlocked.Increment(ref _requests);
            Interlocked.Increment(ref _active);
            try
            {
                for (var i = 0; i < count; i++)
                {
                    var due = Reserve();
                    var wait = due - Stopwatch.GetTimestamp();
                    if (wait > 0)
                    {
                        await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency), context.CancellationToken).ConfigureAwait(false);
                    }

                    yield return i;
                }
            }
            finally
            {
                Interlocked.Decrement(ref _active);
            }
        }

        private long Reserve()
        {
            while (true)
            {
                var now = Stopwatch.GetTimestamp();
                var current = Volatile.Read(ref _nextFree);
                var slot = Math.Max(current, now) + _ticksPerItem;
                if (Interlocked.CompareExchange(ref _nextFree, slot, current) == current)
                {
                    return slot;
                }
            }
        }
    }
}

/// <summary>The skewed-load comparison (<c>skewed_load</c> in the JSON).</summary>
internal sealed class SkewedLoadFigures
{
    [JsonPropertyName("callers")]
    public int Callers { get; set; }

    [JsonPropertyName("items_per_request")]
    public int ItemsPerRequest { get; set; }

    [JsonPropertyName("fast_items_per_sec")]
    public double FastItemsPerSecond { get; set; }

    [JsonPropertyName("slow_items_per_sec")]
    public double SlowItemsPerSecond { get; set; }

    [JsonPropertyName("requests")]
    public Dictionary<string, int> Requests { get; set; } = [];

    [JsonPropertyName("round_robin_p99_ms")]
    public double RoundRobinP99Ms { get; set; }

    [JsonPropertyName("least_connections_p99_ms")]
    public double LeastConnectionsP99Ms { get; set; }

    [JsonPropertyName("power_of_two_p99_ms")]
    public double PowerOfTwoP99Ms { get; set; }

    [JsonPropertyName("round_robin_p50_ms")]
    public double RoundRobinP50Ms { get; set; }

    [JsonPropertyName("least_connections_p50_ms")]
    public double LeastConnectionsP50Ms { get; set; }

    [JsonPropertyName("power_of_two_p50_ms")]
    public double PowerOfTwoP50Ms { get; set; }

    /// <summary>Fraction of requests each policy sent to the slow instance.</summary>
    [JsonPropertyName("slow_instance_share")]
    public Dictionary<string, double> SlowShare { get; set; } = [];
}
