using System.Diagnostics.Metrics;
using RequestMigration.Wire;
using Attr = RequestMigration.Diagnostics.RuntimeTelemetry.Attributes;
using Names = RequestMigration.Diagnostics.RuntimeMetrics.Instruments;

namespace RequestMigration.Diagnostics;

/// <summary>
/// The instruments of one meter (see <see cref="RuntimeMetrics"/> for names, units and attributes) and the
/// recording helpers the runtime calls. Like dotnet/runtime's <c>MetricsHandler</c>, attributes are only
/// built when an instrument is enabled, so an unobserved runtime pays a flag check per measurement.
/// </summary>
internal sealed class MetricInstruments
{
    // Streams last from milliseconds to many minutes; OpenTelemetry's default buckets (0, 5, 10, 25 … 10000) are
    // for milliseconds and would put nearly every call in the first one.
    private static readonly InstrumentAdvice<double> LongDurations = new()
    {
        HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    };

    private static readonly InstrumentAdvice<double> ShortDurations = new()
    {
        HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30],
    };

    // Without an IMeterFactory every runtime of the process records here, so dotnet-counters and
    // AddMeter("RequestMigration") see them; created on first use, never disposed (it lives as long as the process).
    private static readonly Lazy<MetricInstruments> SharedInstruments = new(() => new MetricInstruments(new Meter(Options())));

    public MetricInstruments(Meter meter)
    {
        CallDuration = meter.CreateHistogram(Names.RouterCallDuration, "s", "Duration of router calls, from the request to the last item or the failure", advice: LongDurations);
        TimeToFirstItem = meter.CreateHistogram(Names.RouterTimeToFirstItem, "s", "Time from a router call's start to its first item", advice: ShortDurations);
        FailoverGap = meter.CreateHistogram(Names.RouterFailoverGap, "s", "Time a router call's stream stood still between a failed attempt and the next item", advice: ShortDurations);
        Attempts = meter.CreateCounter<long>(Names.RouterAttempts, "{attempt}", "Attempts routers made on instances, free retries excluded");
        Failovers = meter.CreateCounter<long>(Names.RouterFailovers, "{failover}", "Router calls that started another attempt after one failed");
        RouterActiveStreams = meter.CreateUpDownCounter<long>(Names.RouterActiveStreams, "{stream}", "Router calls in progress");
        Inhibited = meter.CreateCounter<long>(Names.RouterInhibited, "{instance}", "Instances taken out of rotation after failures");
        HeartbeatFailures = meter.CreateCounter<long>(Names.RouterHeartbeatFailures, "{instance}", "Instances declared failed by heartbeat failure detection");
        MembershipEventsDropped = meter.CreateCounter<long>(Names.RouterMembershipEventsDropped, "{event}", "Membership events dropped because a subscriber fell behind");
        Requests = meter.CreateCounter<long>(Names.ServerRequests, "{request}", "Requests a server started handling");
        Rejected = meter.CreateCounter<long>(Names.ServerRejected, "{request}", "Requests and streams a server rejected (bad input, unknown endpoint, draining)");
        Limited = meter.CreateCounter<long>(Names.ServerLimited, "{refusal}", "Connections and requests a server refused, or streams it reset, because of a limit");
        ServerActiveStreams = meter.CreateUpDownCounter<long>(Names.ServerActiveStreams, "{stream}", "Requests a server is handling");
    }

    /// <summary>The process-wide instruments, for runtimes created without an <see cref="IMeterFactory"/>.</summary>
    public static MetricInstruments Shared => SharedInstruments.Value;

    public Histogram<double> CallDuration { get; }

    public Histogram<double> TimeToFirstItem { get; }

    public Histogram<double> FailoverGap { get; }

    public Counter<long> Attempts { get; }

    public Counter<long> Failovers { get; }

    public UpDownCounter<long> RouterActiveStreams { get; }

    public Counter<long> Inhibited { get; }

    public Counter<long> HeartbeatFailures { get; }

    public Counter<long> MembershipEventsDropped { get; }

    public Counter<long> Requests { get; }

    public Counter<long> Rejected { get; }

    public Counter<long> Limited { get; }

    public UpDownCounter<long> ServerActiveStreams { get; }

    /// <summary>Whether anything per router call is observed (otherwise a call skips its bookkeeping).</summary>
    public bool RouterCallsEnabled =>
        CallDuration.Enabled || TimeToFirstItem.Enabled || FailoverGap.Enabled || Attempts.Enabled || Failovers.Enabled || RouterActiveStreams.Enabled;

    /// <summary>The meter's instruments: from <paramref name="factory"/> (which owns and disposes the meter), else <see cref="Shared"/>.</summary>
    public static MetricInstruments Create(IMeterFactory? factory) =>
        factory is null ? Shared : new MetricInstruments(factory.Create(Options()));

    public static KeyValuePair<string, object?> EndpointTag(string endpoint) => new(Attr.Endpoint, endpoint);

    public void InstanceInhibited(in KeyValuePair<string, object?> endpoint) => Inhibited.Add(1, endpoint);

    public void HeartbeatFailed(in KeyValuePair<string, object?> endpoint) => HeartbeatFailures.Add(1, endpoint);

    public void MembershipEventDropped(in KeyValuePair<string, object?> endpoint) => MembershipEventsDropped.Add(1, endpoint);

    public void RequestStarted(string endpoint, string transport)
    {
        if (Requests.Enabled)
        {
            Requests.Add(1, new(Attr.Endpoint, endpoint), new(Attr.Transport, transport));
        }
    }

    public void RequestRejected(string transport, ErrorCode code)
    {
        if (Rejected.Enabled)
        {
            Rejected.Add(1, new(Attr.Transport, transport), new(Attr.ErrorType, ErrorTypeOf(code)));
        }
    }

    public void LimitReached(string limit) => Limited.Add(1, new KeyValuePair<string, object?>(RuntimeMetrics.LimitAttribute, limit));

    /// <summary>
    /// A server stream started (+1) or ended (-1). Not guarded by <c>Enabled</c>: the end must be recorded
    /// whenever the start was, and a guard on each side could see different answers.
    /// </summary>
    public void ServerStream(string transport, int delta) => ServerActiveStreams.Add(delta, new KeyValuePair<string, object?>(Attr.Transport, transport));

    /// <summary>The <c>error.type</c> of a wire error code: its name in snake case.</summary>
    public static string ErrorTypeOf(ErrorCode code) => code switch
    {
        ErrorCode.StreamIncomplete => "stream_incomplete",
        ErrorCode.Handler => "handler",
        ErrorCode.BadRequest => "bad_request",
        ErrorCode.UnknownEndpoint => "unknown_endpoint",
        ErrorCode.Unavailable => "unavailable",
        ErrorCode.FrameTooLarge => "frame_too_large",

        // A code from a newer peer: one value for all of them, never a number that could take any value.
        _ => "_OTHER",
    };

    private static MeterOptions Options() => new(RuntimeMetrics.MeterName)
    {
        Version = typeof(MetricInstruments).Assembly.GetName().Version?.ToString(),
    };
}
