using System.Diagnostics;
using System.Globalization;
using RequestMigration.Bench.Proto;
using RequestMigration.Routing;
using RequestMigration.Serialization;
using RequestMigration.Transport;
using RequestMigration.Wire;

namespace RequestMigration.Bench;

/// <summary>
/// Figure 1: one stream, the server yields N small items as fast as it can, items/s as the consumer receives
/// them. Measured three ways: through the PushRouter (what users get), through gRPC server streaming, and
/// through our transport with no router (ClientStream + FrameReader, frames counted, not decoded), which
/// shows what the router's per-item path (decode, Annotated, async iterator) costs on top of the wire, and the
/// same raw read decoding every item with the router's serializer, which leaves the router's own share.
/// </summary>
/// <remarks>
/// The three variants run interleaved (router, raw, gRPC, router, ...) so that load from anything else on the
/// machine lands on all of them alike; each figure is the median of its repetitions. Process CPU time per item
/// (client + server, both in this process) is reported too: on a shared machine it moves less than wall time.
/// </remarks>
internal static class Throughput
{
    private sealed record Variant(string Name, Func<int, Task<long>> Stream)
    {
        public List<double> Rates { get; } = [];

        public List<double> CpuPerItem { get; } = [];
    }

    public static async Task RunAsync(TransportKind transport, BenchSettings settings, TransportFigures figures)
    {
        await using var ours = await OurCluster.StartAsync(transport, servers: 1);
        await using var grpc = await GrpcCluster.StartAsync(servers: 1);
        var router = await ours.CreateRouterAsync();
        var server = ours.Servers[0];
        var connector = ours.Runtime.Transports.ConnectorFor(server.Transport);
        using var channel = grpc.Channel(0);
        var client = new BenchService.BenchServiceClient(channel);

        Variant[] variants =
        [
            new("router", n => ViaRouterAsync(router, n)),
            new("raw", n => ViaRawTransportAsync(connector, server.Address, n, decode: false)),
            new("grpc", n => ViaGrpcAsync(client, n)),
            new("raw+decode", n => ViaRawTransportAsync(connector, server.Address, n, decode: true)),
        ];

        // Warm-up: JIT tiers, pooled connections, TLS sessions, buffer pools; by time (see BenchSettings).
        var n = settings.ThroughputItems;
        foreach (var v in variants)
        {
            var until = Stopwatch.GetTimestamp() + (long)(settings.ThroughputWarmup.TotalSeconds * Stopwatch.Frequency);
            do
            {
                await v.Stream(Math.Max(n / 10, 10_000));
            }
            while (Stopwatch.GetTimestamp() < until);
        }

        for (var rep = 0; rep < settings.ThroughputRepetitions; rep++)
        {
            // Rotate the order so no variant always runs right after the same neighbour.
            for (var k = 0; k < variants.Length; k++)
            {
                var v = variants[(rep + k) % variants.Length];

                // Start every repetition from a clean heap so one run's garbage doesn't bill the next.
                GC.Collect();
                GC.WaitForPendingFinalizers();
                var cpu0 = Cpu.ProcessTime();
                var start = Stopwatch.GetTimestamp();
                var got = await v.Stream(n);
                var end = Stopwatch.GetTimestamp();
                var cpu = Cpu.ProcessTime() - cpu0;
                if (got != n)
                {
                    throw new InvalidOperationException($"{v.Name}: received {got} items, expected {n}");
                }

                v.Rates.Add(n / Stats.ElapsedSeconds(start, end));
                v.CpuPerItem.Add(cpu.TotalMicroseconds / n);
            }
        }

        foreach (var v in variants)
        {
            Console.Error.WriteLine($"  throughput {v.Name}/{transport}: median {Stats.Median(v.Rates):N0} items/s, {Stats.Median(v.CpuPerItem):0.00} us CPU/item; runs [{string.Join(", ", v.Rates.Select(r => r.ToString("N0", CultureInfo.InvariantCulture)))}]");
        }

        figures.ThroughputItemsPerSec = Stats.Median(variants[0].Rates);
        figures.ThroughputCpuUsPerItem = Stats.Median(variants[0].CpuPerItem);
        figures.RawTransportItemsPerSec = Stats.Median(variants[1].Rates);
        figures.RawTransportCpuUsPerItem = Stats.Median(variants[1].CpuPerItem);
        figures.GrpcThroughputItemsPerSec = Stats.Median(variants[2].Rates);
        figures.GrpcThroughputCpuUsPerItem = Stats.Median(variants[2].CpuPerItem);
        figures.RawDecodedItemsPerSec = Stats.Median(variants[3].Rates);
        figures.RawDecodedCpuUsPerItem = Stats.Median(variants[3].CpuPerItem);
    }

    private static async Task<long> ViaRouterAsync(PushRouter<StreamRequest, string> router, int n)
    {
        long count = 0;
        await foreach (var item in router.GenerateAsync(new StreamRequest(n)))
        {
            if (item.IsError)
            {
                throw new InvalidOperationException($"router stream failed: {item.Comment}");
            }

            count++;
        }

        return count;
    }

    private static async Task<long> ViaRawTransportAsync(IClientConnector connector, string address, int n, bool decode)
    {
        var stream = await connector.OpenAsync(address, CancellationToken.None);
        var clean = false;
        try
        {
            var output = stream.Writer.BeginFrame(FrameType.Request);
            new RequestHeader(BenchEndpoint.Stream.Path, Guid.NewGuid().ToString("N"), 1, ReadOnlyMemory<byte>.Empty).Write(output);
            JsonPayloadSerializer.Default.Serialize(output, new StreamRequest(n));
            stream.Writer.EndFrame();
            await stream.Writer.FlushAsync(CancellationToken.None);

            long count = 0;
            while (await stream.Reader.ReadAsync(CancellationToken.None))
            {
                switch (stream.Reader.Type)
                {
                    case FrameType.Data:
                        if (decode && JsonPayloadSerializer.Default.Deserialize<string>(stream.Reader.Payload).Length == 0)
                        {
                            throw new InvalidOperationException("raw stream: empty item");
                        }

                        count++;
                        continue;
                    case FrameType.End:
                        clean = true;
                        return count;
                    default:
                        throw new InvalidOperationException($"raw stream: unexpected {stream.Reader.Type} frame");
                }
            }

            throw new InvalidOperationException("raw stream ended without an end frame");
        }
        finally
        {
            if (clean)
            {
                await stream.ReleaseAsync();
            }
            else
            {
                await stream.DisposeAsync();
            }
        }
    }

    private static async Task<long> ViaGrpcAsync(BenchService.BenchServiceClient client, int n)
    {
        using var call = client.Stream(new Proto.StreamRequest { Count = n });
        long count = 0;
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            _ = call.ResponseStream.Current;
            count++;
        }

        return count;
    }
}
