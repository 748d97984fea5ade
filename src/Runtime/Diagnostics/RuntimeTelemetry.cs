using System.Diagnostics;

namespace RequestMigration.Diagnostics;

/// <summary>
/// Tracing: one <see cref="ActivitySource"/> named <c>RequestMigration</c> (subscribe with OpenTelemetry's
/// <c>AddSource("RequestMigration")</c>). A router call is a client span with one client span per attempt under it;
/// the server's span is the attempt span's child (W3C trace context travels in the request header), so a
/// migrated stream is one trace whose attempt spans sit on different servers. Failover, inhibit and heartbeat
/// failure are span events.
/// </summary>
public static class RuntimeTelemetry
{
    /// <summary>The activity source (and meter) name.</summary>
    public const string SourceName = "RequestMigration";

    /// <summary>Attribute names on spans and metrics.</summary>
    public static class Attributes
    {
        /// <summary><c>ns/component/endpoint</c>.</summary>
        public const string Endpoint = "request_migration.endpoint";

        /// <summary>The instance id, hexadecimal as in discovery keys.</summary>
        public const string InstanceId = "request_migration.instance.id";

        /// <summary>1 for the first attempt of a call, then 2, 3, …</summary>
        public const string Attempt = "request_migration.attempt";

        /// <summary>How an attempt ended: <c>completed</c>, <c>unreachable</c>, <c>broken</c>, …</summary>
        public const string Outcome = "request_migration.outcome";

        /// <summary>The request id, the same on every attempt of one call.</summary>
        public const string RequestId = "request_migration.request.id";

        /// <summary>Items the consumer had before the attempt (migration resumes after them).</summary>
        public const string ResumeFrom = "request_migration.resume_from";

        /// <summary>OpenTelemetry's <c>network.transport</c>: <c>quic</c> or <c>tcp</c>.</summary>
        public const string Transport = "network.transport";

        /// <summary>OpenTelemetry's <c>server.address</c> (host of the instance).</summary>
        public const string ServerAddress = "server.address";

        /// <summary>OpenTelemetry's <c>server.port</c>.</summary>
        public const string ServerPort = "server.port";

        /// <summary>OpenTelemetry's <c>error.type</c>: a low-cardinality class of the failure.</summary>
        public const string ErrorType = "error.type";
    }

    internal static readonly ActivitySource Source = new(SourceName, typeof(RuntimeTelemetry).Assembly.GetName().Version?.ToString());
}
