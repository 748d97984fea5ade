using System.Text.Json;
using System.Text.Json.Serialization;

namespace RequestMigration.Bench;

/// <summary>
/// Figures of one transport. Field names are part of the bench's interface (<c>--out</c>): snake_case, stable;
/// a figure that could not be measured is null, never a made-up number.
/// </summary>
internal class TransportFigures
{
    [JsonPropertyName("transport")]
    public string Transport { get; set; } = "tcp";

    [JsonPropertyName("throughput_items")]
    public int ThroughputItems { get; set; }

    [JsonPropertyName("throughput_items_per_sec")]
    public double? ThroughputItemsPerSec { get; set; }

    [JsonPropertyName("grpc_throughput_items_per_sec")]
    public double? GrpcThroughputItemsPerSec { get; set; }

    [JsonPropertyName("raw_transport_items_per_sec")]
    public double? RawTransportItemsPerSec { get; set; }

    /// <summary>The raw transport read, decoding every item with the router's serializer: wire plus decoding, no router.</summary>
    [JsonPropertyName("raw_decoded_items_per_sec")]
    public double? RawDecodedItemsPerSec { get; set; }

    [JsonPropertyName("raw_decoded_cpu_us_per_item")]
    public double? RawDecodedCpuUsPerItem { get; set; }

    /// <summary>Process CPU (client + server, same process) per item: less sensitive to a busy machine than items/s.</summary>
    [JsonPropertyName("throughput_cpu_us_per_item")]
    public double? ThroughputCpuUsPerItem { get; set; }

    [JsonPropertyName("grpc_throughput_cpu_us_per_item")]
    public double? GrpcThroughputCpuUsPerItem { get; set; }

    [JsonPropertyName("raw_transport_cpu_us_per_item")]
    public double? RawTransportCpuUsPerItem { get; set; }

    /// <summary>Short requests from <see cref="BenchSettings.RequestCallers"/> (32) callers.</summary>
    [JsonPropertyName("request_rate")]
    public RequestRateFigures RequestRate { get; set; } = new();

    /// <summary>The same with <see cref="BenchSettings.HighFanInCallers"/> (256) callers.</summary>
    [JsonPropertyName("request_rate_high_fan_in")]
    public RequestRateFigures RequestRateHighFanIn { get; set; } = new();

    [JsonPropertyName("grpc_load_balancing")]
    public string GrpcLoadBalancing { get; set; } = "round_robin via Grpc.Net.Client static resolver";

    [JsonPropertyName("failovers")]
    public int Failovers { get; set; }

    [JsonPropertyName("failover_gap_ms_p50")]
    public double? FailoverGapMsP50 { get; set; }

    [JsonPropertyName("failover_gap_ms_p99")]
    public double? FailoverGapMsP99 { get; set; }

    [JsonPropertyName("failover_gap_ms_max")]
    public double? FailoverGapMsMax { get; set; }

    /// <summary>Cut to the consumer seeing the error item: the detection part of the gap.</summary>
    [JsonPropertyName("failover_detect_ms_p50")]
    public double? FailoverDetectMsP50 { get; set; }

    [JsonPropertyName("grpc_failover")]
    public string GrpcFailover { get; set; } = "n/a (no mid-stream failover)";

    [JsonPropertyName("idle_streams")]
    public int IdleStreams { get; set; }

    /// <summary>Server process working-set growth per idle stream (after GC).</summary>
    [JsonPropertyName("bytes_per_idle_stream")]
    public double? BytesPerIdleStream { get; set; }

    /// <summary>Server managed-heap growth per idle stream (after GC).</summary>
    [JsonPropertyName("managed_bytes_per_idle_stream")]
    public double? ManagedBytesPerIdleStream { get; set; }

    /// <summary>Client (bench) process working-set growth per idle stream (after GC).</summary>
    [JsonPropertyName("client_bytes_per_idle_stream")]
    public double? ClientBytesPerIdleStream { get; set; }

    [JsonPropertyName("grpc_bytes_per_idle_stream")]
    public double? GrpcBytesPerIdleStream { get; set; }

    [JsonPropertyName("grpc_managed_bytes_per_idle_stream")]
    public double? GrpcManagedBytesPerIdleStream { get; set; }

    [JsonPropertyName("grpc_client_bytes_per_idle_stream")]
    public double? GrpcClientBytesPerIdleStream { get; set; }

    [JsonPropertyName("ratios")]
    public Ratios Ratios { get; set; } = new();

    [JsonPropertyName("errors")]
    public List<string> Errors { get; set; } = [];

    public void ComputeRatios()
    {
        Ratios = new Ratios
        {
            ThroughputVsGrpc = Ratio(ThroughputItemsPerSec, GrpcThroughputItemsPerSec),
            RequestRateVsGrpc = Ratio(RequestRate.RatePerSec, RequestRate.GrpcRatePerSec),
            HighFanInRequestRateVsGrpc = Ratio(RequestRateHighFanIn.RatePerSec, RequestRateHighFanIn.GrpcRatePerSec),
            RawTransportVsRouter = Ratio(RawTransportItemsPerSec, ThroughputItemsPerSec),
            RawDecodedVsRouter = Ratio(RawDecodedItemsPerSec, ThroughputItemsPerSec),
            IdleStreamMemoryVsGrpc = Ratio(BytesPerIdleStream, GrpcBytesPerIdleStream),
        };
    }

    internal static double? Ratio(double? a, double? b) => a is { } x && b is { } y && y > 0 ? x / y : null;
}

/// <summary>One request-rate figure: ours and gRPC at the same number of callers, timed in alternating rounds.</summary>
internal sealed class RequestRateFigures
{
    [JsonPropertyName("callers")]
    public int Callers { get; set; }

    [JsonPropertyName("rate_per_sec")]
    public double? RatePerSec { get; set; }

    [JsonPropertyName("grpc_rate_per_sec")]
    public double? GrpcRatePerSec { get; set; }

    [JsonPropertyName("latency_ms_p50")]
    public double? LatencyMsP50 { get; set; }

    [JsonPropertyName("latency_ms_p99")]
    public double? LatencyMsP99 { get; set; }

    [JsonPropertyName("grpc_latency_ms_p50")]
    public double? GrpcLatencyMsP50 { get; set; }

    [JsonPropertyName("grpc_latency_ms_p99")]
    public double? GrpcLatencyMsP99 { get; set; }

    /// <summary>Process CPU (client + server, same process) per request.</summary>
    [JsonPropertyName("cpu_us_per_request")]
    public double? CpuUsPerRequest { get; set; }

    [JsonPropertyName("grpc_cpu_us_per_request")]
    public double? GrpcCpuUsPerRequest { get; set; }
}

internal sealed class Ratios
{
    [JsonPropertyName("throughput_vs_grpc")]
    public double? ThroughputVsGrpc { get; set; }

    [JsonPropertyName("request_rate_vs_grpc")]
    public double? RequestRateVsGrpc { get; set; }

    [JsonPropertyName("high_fan_in_request_rate_vs_grpc")]
    public double? HighFanInRequestRateVsGrpc { get; set; }

    /// <summary>Raw transport items/s over router items/s: what the router's per-item path costs.</summary>
    [JsonPropertyName("raw_transport_vs_router")]
    public double? RawTransportVsRouter { get; set; }

    /// <summary>Raw transport with decoding over router items/s: what the router itself costs per item.</summary>
    [JsonPropertyName("raw_decoded_vs_router")]
    public double? RawDecodedVsRouter { get; set; }

    /// <summary>Server bytes per idle stream, ours over gRPC's (below 1 is better for us).</summary>
    [JsonPropertyName("idle_stream_memory_vs_grpc")]
    public double? IdleStreamMemoryVsGrpc { get; set; }
}

internal sealed class PropagationFigures
{
    [JsonPropertyName("available")]
    public bool Available { get; set; }

    [JsonPropertyName("reason")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Reason { get; set; }

    [JsonPropertyName("cycles")]
    public int Cycles { get; set; }

    [JsonPropertyName("register_ms_p50")]
    public double? RegisterMsP50 { get; set; }

    [JsonPropertyName("register_ms_p99")]
    public double? RegisterMsP99 { get; set; }

    [JsonPropertyName("remove_ms_p50")]
    public double? RemoveMsP50 { get; set; }

    [JsonPropertyName("remove_ms_p99")]
    public double? RemoveMsP99 { get; set; }

    /// <summary>p99 over register and remove samples together: how long any discovery change takes to reach a router.</summary>
    [JsonPropertyName("propagation_ms_p99")]
    public double? PropagationMsP99 { get; set; }
}

/// <summary>The whole run: machine first, then the TCP figures at top level, then discovery and QUIC (or why it was skipped).</summary>
internal sealed class BenchResults : TransportFigures
{
    [JsonPropertyName("cores")]
    [JsonPropertyOrder(-10)]
    public int Cores { get; set; } = Environment.ProcessorCount;

    [JsonPropertyName("quick")]
    [JsonPropertyOrder(-10)]
    public bool Quick { get; set; }

    [JsonPropertyName("started_utc")]
    [JsonPropertyOrder(-10)]
    public DateTimeOffset StartedUtc { get; set; } = DateTimeOffset.UtcNow;

    [JsonPropertyName("runtime")]
    [JsonPropertyOrder(-10)]
    public string Runtime { get; set; } = System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription;

    [JsonPropertyName("os")]
    [JsonPropertyOrder(-10)]
    public string Os { get; set; } = System.Runtime.InteropServices.RuntimeInformation.OSDescription;

    /// <summary>1-minute load average before and after the run: above the core count, other work shared the CPUs.</summary>
    [JsonPropertyName("load_average_start")]
    [JsonPropertyOrder(-10)]
    public double? LoadAverageStart { get; set; } = Cpu.LoadAverage();

    [JsonPropertyName("load_average_end")]
    [JsonPropertyOrder(-10)]
    public double? LoadAverageEnd { get; set; }

    [JsonPropertyName("open_files_limit")]
    [JsonPropertyOrder(-10)]
    public long? OpenFilesLimit { get; set; }

    [JsonPropertyName("propagation")]
    [JsonPropertyOrder(10)]
    public Dictionary<string, PropagationFigures> Propagation { get; set; } = [];

    [JsonPropertyName("quic")]
    [JsonPropertyOrder(10)]
    public TransportFigures? Quic { get; set; }

    [JsonPropertyName("skewed_load")]
    [JsonPropertyOrder(10)]
    public SkewedLoadFigures? SkewedLoad { get; set; }

    [JsonPropertyName("quic_skipped_reason")]
    [JsonPropertyOrder(10)]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? QuicSkippedReason { get; set; }

    [JsonPropertyName("elapsed_sec")]
    [JsonPropertyOrder(10)]
    public double ElapsedSec { get; set; }

    public static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public string ToJson() => JsonSerializer.Serialize(this, Json);
}
