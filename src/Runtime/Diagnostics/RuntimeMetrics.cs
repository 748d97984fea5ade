using System.Diagnostics.Metrics;

namespace RequestMigration.Diagnostics;

/// <summary>
/// Instruments of the runtime, on the meter <c>RequestMigration</c> (listen with dotnet-counters or
/// OpenTelemetry). Router instruments carry an <c>endpoint</c> tag (<c>ns/component/endpoint</c>), the same
/// name as the log property.
/// </summary>
public static class RuntimeMetrics
{
    /// <summary>The meter name.</summary>
    public const string MeterName = "RequestMigration";

    private static readonly Meter s_meter = new(MeterName, "1.0");

    internal static readonly Counter<long> RequestsServed = s_meter.CreateCounter<long>("rm.server.requests", description: "Requests a server started handling");

    internal static readonly Counter<long> StreamsRejected = s_meter.CreateCounter<long>("rm.server.rejected", description: "Streams rejected for bad input (malformed, oversized, unknown endpoint)");

    internal static readonly Counter<long> LimitRejections = s_meter.CreateCounter<long>("rm.server.limited", description: "Connections and requests a server refused, or streams it reset, because of a limit (tag: limit, the ServerLimits property)");

    internal static readonly Counter<long> Attempts = s_meter.CreateCounter<long>("rm.router.attempts", description: "Attempts made by routers");

    internal static readonly Counter<long> Failovers = s_meter.CreateCounter<long>("rm.router.failovers", description: "Failed attempts retried on another instance");

    internal static readonly Counter<long> MembershipEventsDropped = s_meter.CreateCounter<long>("rm.router.membership_events_dropped", description: "Membership events dropped because a subscriber fell behind");

    internal static readonly Counter<long> HeartbeatFailures = s_meter.CreateCounter<long>("rm.router.heartbeat_failures", description: "Instances declared failed by heartbeat failure detection");

    internal static readonly Counter<long> InstancesInhibited = s_meter.CreateCounter<long>("rm.router.inhibited", description: "Instances reported down");
}
