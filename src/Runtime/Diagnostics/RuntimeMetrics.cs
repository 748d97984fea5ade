namespace RequestMigration.Diagnostics;

/// <summary>
/// Names of the runtime's metrics, on the meter <c>RequestMigration</c> (OpenTelemetry's
/// <c>AddMeter("RequestMigration")</c>, or <c>dotnet-counters monitor --counters RequestMigration</c>). A runtime
/// created with an <see cref="System.Diagnostics.Metrics.IMeterFactory"/> (the DI extension passes the container's)
/// creates its meter from it; without one, every runtime of the process shares one meter of that name.
/// </summary>
/// <remarks>
/// <para>
/// Names and units follow OpenTelemetry's conventions: durations are histograms in seconds, counters carry a
/// unit in braces, in-flight streams are up-down counters. Attributes reuse the tracing names of
/// <see cref="RuntimeTelemetry.Attributes"/> (<c>request_migration.endpoint</c>,
/// <c>request_migration.instance.id</c>, <c>network.transport</c>, <c>error.type</c>).
/// </para>
/// <para>
/// Cardinality: every attribute takes few values (endpoints are configured, not requested; <c>error.type</c>
/// is a class of failure, never a message). The one exception is <c>request_migration.instance.id</c>, which
/// only <see cref="Instruments.RouterAttempts"/> carries: instance ids change whenever an instance restarts, so
/// a series per instance accumulates over a deployment's life; it is worth it on the one counter that says
/// which instance failed, and kept off the histograms, where each series costs a set of buckets. Endpoints a
/// server does not serve never become attribute values (a peer could invent them).
/// </para>
/// </remarks>
public static class RuntimeMetrics
{
    /// <summary>The meter name (the same as the activity source's, <see cref="RuntimeTelemetry.SourceName"/>).</summary>
    public const string MeterName = RuntimeTelemetry.SourceName;

    /// <summary>
    /// The limit that stopped a peer (<see cref="Instruments.ServerLimited"/>): the name of the
    /// <see cref="Serving.ServerLimits"/> property, e.g. <c>MaxConcurrentStreams</c>.
    /// </summary>
    public const string LimitAttribute = "request_migration.limit";

    /// <summary>The instruments' names.</summary>
    public static class Instruments
    {
        /// <summary>
        /// Histogram, <c>s</c>: a router call from its start to its end (last item, failure, cancellation, or the
        /// consumer stopping early). Attributes: endpoint; <c>error.type</c> when it failed (the exception's type
        /// name, as on the call span, or <c>OperationCanceledException</c>).
        /// </summary>
        public const string RouterCallDuration = "request_migration.router.call.duration";

        /// <summary>Histogram, <c>s</c>: from a call's start to its first item, failed-over attempts included. Attributes: endpoint.</summary>
        public const string RouterTimeToFirstItem = "request_migration.router.time_to_first_item";

        /// <summary>
        /// Histogram, <c>s</c>: how long a call's stream stood still when an attempt failed and another took
        /// over: from the end of the first failed attempt since the last item to the next item. Attributes:
        /// endpoint, <c>error.type</c> of that failed attempt.
        /// </summary>
        public const string RouterFailoverGap = "request_migration.router.failover.gap";

        /// <summary>
        /// Counter, <c>{attempt}</c>: attempts that reached for an instance. Free retries (the instance was
        /// unreachable or draining, or a pooled connection had gone stale) are not counted, so this is
        /// comparable with <see cref="Routing.RouterOptions.MaxAttempts"/>. Attributes: endpoint, instance id,
        /// transport, <c>error.type</c> when the attempt failed (<c>broken</c>, <c>unreachable</c>,
        /// <c>draining</c>, <c>rejected</c>, <c>local_failure</c>, <c>stale_connection</c>; as on attempt spans).
        /// </summary>
        public const string RouterAttempts = "request_migration.router.attempts";

        /// <summary>
        /// Counter, <c>{failover}</c>: a call started another attempt after one failed (migrations included;
        /// stale pooled connections are not failovers). Attributes: endpoint, <c>error.type</c> of the failed attempt.
        /// </summary>
        public const string RouterFailovers = "request_migration.router.failovers";

        /// <summary>Up-down counter, <c>{stream}</c>: router calls in progress. Attributes: endpoint.</summary>
        public const string RouterActiveStreams = "request_migration.router.active_streams";

        /// <summary>Counter, <c>{instance}</c>: instances taken out of rotation after failures. Attributes: endpoint.</summary>
        public const string RouterInhibited = "request_migration.router.inhibited";

        /// <summary>Counter, <c>{instance}</c>: instances declared failed by heartbeat failure detection. Attributes: endpoint.</summary>
        public const string RouterHeartbeatFailures = "request_migration.router.heartbeat_failures";

        /// <summary>Counter, <c>{event}</c>: membership events dropped because a subscriber fell behind. Attributes: endpoint.</summary>
        public const string RouterMembershipEventsDropped = "request_migration.router.membership_events_dropped";

        /// <summary>Counter, <c>{request}</c>: requests a server admitted and handed to a handler. Attributes: endpoint, transport.</summary>
        public const string ServerRequests = "request_migration.server.requests";

        /// <summary>
        /// Counter, <c>{request}</c>: requests and streams a server rejected for bad input or because it is
        /// draining. Attributes: transport, <c>error.type</c> (the wire error code: <c>bad_request</c>,
        /// <c>unknown_endpoint</c>, <c>unavailable</c>, <c>frame_too_large</c>, …).
        /// </summary>
        public const string ServerRejected = "request_migration.server.rejected";

        /// <summary>
        /// Counter, <c>{refusal}</c>: connections and requests a server refused, or streams it reset, because of a
        /// limit. Attributes: <see cref="LimitAttribute"/>.
        /// </summary>
        public const string ServerLimited = "request_migration.server.limited";

        /// <summary>Up-down counter, <c>{stream}</c>: requests a server is handling now. Attributes: transport.</summary>
        public const string ServerActiveStreams = "request_migration.server.active_streams";
    }
}
