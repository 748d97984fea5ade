using System.Globalization;
using System.Text;

namespace RequestMigration.Bench;

/// <summary>Renders a run as the markdown table that docs/benchmarks.md quotes verbatim.</summary>
internal static class TablePrinter
{
    public static string Render(BenchResults r)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"### RequestMigration vs gRPC ({(r.Quick ? "quick" : "full")} run)");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Machine: {r.Cores} cores, {r.Os}, {r.Runtime}; everything on 127.0.0.1 with TLS, servers and clients in one process (workstation GC); open-files limit {r.OpenFilesLimit?.ToString(CultureInfo.InvariantCulture) ?? "?"}; 1-min load average {Load(r.LoadAverageStart)} at start, {Load(r.LoadAverageEnd)} at end.");
        sb.AppendLine();
        AppendTransport(sb, r, r.Transport);
        if (r.Quic is { } quic)
        {
            sb.AppendLine();
            AppendTransport(sb, quic, quic.Transport);
        }
        else
        {
            sb.AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"QUIC: skipped ({r.QuicSkippedReason}).");
        }

        sb.AppendLine();
        sb.AppendLine("#### Discovery propagation (register -> routable, remove -> gone)");
        sb.AppendLine();
        sb.AppendLine("| Store | Cycles | Register p50 (ms) | Register p99 (ms) | Remove p50 (ms) | Remove p99 (ms) | Propagation p99 (ms) |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach (var (store, p) in r.Propagation)
        {
            if (!p.Available)
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"| {store} | - | not available: {p.Reason} | | | | |");
                continue;
            }

            sb.AppendLine(CultureInfo.InvariantCulture, $"| {store} | {p.Cycles} | {Ms(p.RegisterMsP50)} | {Ms(p.RegisterMsP99)} | {Ms(p.RemoveMsP50)} | {Ms(p.RemoveMsP99)} | {Ms(p.PropagationMsP99)} |");
        }

        if (r.SkewedLoad is { } k)
        {
            sb.AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"#### Load balancing under skew (TCP): 2 instances at {k.FastItemsPerSecond:0} items/s, 1 at {k.SlowItemsPerSecond:0} items/s, {k.Callers} callers, {k.ItemsPerRequest} items per request");
            sb.AppendLine();
            sb.AppendLine("| Policy | Requests | Share sent to the slow instance | p50 (ms) | p99 (ms) | p99 vs round robin |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|");
            foreach (var (name, p50, p99) in new[]
            {
                ("RoundRobin", k.RoundRobinP50Ms, k.RoundRobinP99Ms),
                ("LeastConnections", k.LeastConnectionsP50Ms, k.LeastConnectionsP99Ms),
                ("PowerOfTwoChoices", k.PowerOfTwoP50Ms, k.PowerOfTwoP99Ms),
            })
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"| {name} | {k.Requests.GetValueOrDefault(name)} | {k.SlowShare.GetValueOrDefault(name):P1} | {p50:0.0} | {p99:0.0} | {k.RoundRobinP99Ms / p99:0.00}x lower |");
            }
        }

        var errors = r.Errors.Concat(r.Quic?.Errors ?? []).ToList();
        if (errors.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine("Errors:");
            foreach (var e in errors)
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"- {e}");
            }
        }

        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Total bench time: {r.ElapsedSec:0.0} s.");
        return sb.ToString();
    }

    private static void AppendTransport(StringBuilder sb, TransportFigures f, string transport)
    {
        sb.AppendLine(CultureInfo.InvariantCulture, $"#### Transport: {transport} (gRPC: HTTP/2 over TLS over TCP, Kestrel + Grpc.Net.Client)");
        sb.AppendLine();
        sb.AppendLine("| Figure | RequestMigration | gRPC | Ours / gRPC |");
        sb.AppendLine("|---|---:|---:|---:|");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Streaming throughput, 1 stream of {f.ThroughputItems:N0} x 64-B items, through PushRouter (items/s) | {Rate(f.ThroughputItemsPerSec)} | {Rate(f.GrpcThroughputItemsPerSec)} | {Ratio(f.Ratios.ThroughputVsGrpc)} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Streaming throughput, raw transport without router (items/s) | {Rate(f.RawTransportItemsPerSec)} | - | raw/router {Ratio(f.Ratios.RawTransportVsRouter)} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Streaming throughput, raw transport decoding each item, no router (items/s) | {Rate(f.RawDecodedItemsPerSec)} | - | raw+decode/router {Ratio(f.Ratios.RawDecodedVsRouter)} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Streaming CPU per item, client + server (us): router / raw / raw+decode | {Us(f.ThroughputCpuUsPerItem)} / {Us(f.RawTransportCpuUsPerItem)} / {Us(f.RawDecodedCpuUsPerItem)} | {Us(f.GrpcThroughputCpuUsPerItem)} | |");
        foreach (var r in new[] { f.RequestRate, f.RequestRateHighFanIn })
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"| Request rate, {r.Callers} callers, 2 servers, 10 items/request (req/s) | {Rate(r.RatePerSec)} | {Rate(r.GrpcRatePerSec)} | {Ratio(TransportFigures.Ratio(r.RatePerSec, r.GrpcRatePerSec))} |");
            sb.AppendLine(CultureInfo.InvariantCulture, $"| Request latency p50 / p99, {r.Callers} callers (ms) | {Ms(r.LatencyMsP50)} / {Ms(r.LatencyMsP99)} | {Ms(r.GrpcLatencyMsP50)} / {Ms(r.GrpcLatencyMsP99)} | |");
            sb.AppendLine(CultureInfo.InvariantCulture, $"| CPU per request, client + server, {r.Callers} callers (us) | {Us(r.CpuUsPerRequest)} | {Us(r.GrpcCpuUsPerRequest)} | |");
        }

        sb.AppendLine(CultureInfo.InvariantCulture, $"| Failover gap p50, cut -> next item from another instance ({f.Failovers} failovers) (ms) | {Ms(f.FailoverGapMsP50)} | {f.GrpcFailover} | |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Failover gap p99 (ms) | {Ms(f.FailoverGapMsP99)} | {f.GrpcFailover} | |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Failover gap max (ms) | {Ms(f.FailoverGapMsMax)} | {f.GrpcFailover} | |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Failover detection p50, cut -> consumer sees the error item (ms) | {Ms(f.FailoverDetectMsP50)} | - | |");
        var conn = transport == "tcp" ? "streams multiplexed (rm/2) over pooled TCP+TLS connections" : "streams share one QUIC connection";
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Server memory per idle stream, {f.IdleStreams:N0} streams; ours: {conn}; gRPC: HTTP/2 streams (bytes, working set after GC) | {Bytes(f.BytesPerIdleStream)} | {Bytes(f.GrpcBytesPerIdleStream)} | {Ratio(f.Ratios.IdleStreamMemoryVsGrpc)} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Server managed heap per idle stream (bytes) | {Bytes(f.ManagedBytesPerIdleStream)} | {Bytes(f.GrpcManagedBytesPerIdleStream)} | |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Client memory per idle stream (bytes, working set after GC) | {Bytes(f.ClientBytesPerIdleStream)} | {Bytes(f.GrpcClientBytesPerIdleStream)} | |");
    }

    private static string Us(double? v) => v is { } x ? x.ToString("0.00", CultureInfo.InvariantCulture) : "failed";

    private static string Load(double? v) => v is { } x ? x.ToString("0.0", CultureInfo.InvariantCulture) : "?";

    private static string Rate(double? v) => v is { } x ? x.ToString("N0", CultureInfo.InvariantCulture) : "failed";

    private static string Ms(double? v) => v is { } x ? x.ToString(x < 10 ? "0.000" : "0.0", CultureInfo.InvariantCulture) : "failed";

    private static string Bytes(double? v) => v is { } x ? x.ToString("N0", CultureInfo.InvariantCulture) : "failed";

    private static string Ratio(double? v) => v is { } x ? x.ToString("0.00", CultureInfo.InvariantCulture) + "x" : "-";
}
