using RequestMigration.Discovery.Instances;

namespace Examples.ConnectionSwap;

/// <summary>The example's endpoints. USER ports carry <c>generate</c> and <c>assign</c>; MGMT ports the rest.</summary>
internal static class Endpoints
{
    /// <summary>Director USER port: the client's token stream, continued on the next worker when one fails.</summary>
    public static readonly EndpointId DirectorGenerate = EndpointId.Parse("connection-swap/director/generate");

    /// <summary>Director USER port: direct mode asks which worker to stream from.</summary>
    public static readonly EndpointId DirectorAssign = EndpointId.Parse("connection-swap/director/assign");

    /// <summary>Director MGMT port: a worker registers and heartbeats (every <c>CONNECTION_SWAP_WORKER_HEARTBEAT_SECS</c>).</summary>
    public static readonly EndpointId DirectorRegister = EndpointId.Parse("connection-swap/director/register");

    /// <summary>Director MGMT port: health check (the director's worker pool).</summary>
    public static readonly EndpointId DirectorHealth = EndpointId.Parse("connection-swap/director/health");

    /// <summary>Worker USER port: numbered tokens.</summary>
    public static readonly EndpointId WorkerGenerate = EndpointId.Parse("connection-swap/worker/generate");

    /// <summary>Worker MGMT port: health check.</summary>
    public static readonly EndpointId WorkerHealth = EndpointId.Parse("connection-swap/worker/health");
}

/// <summary>Tag keys and values of the example's instance records.</summary>
internal static class Tags
{
    public const string Role = "role";
    public const string Label = "label";

    public static IReadOnlyDictionary<string, string> For(string role, string label) =>
        new SortedDictionary<string, string>(StringComparer.Ordinal) { [Role] = role, [Label] = label };

    public static string LabelOf(InstanceRecord record) =>
        record.Tags.TryGetValue(Label, out var label) ? label : record.Address;
}

/// <summary>
/// Asks for tokens <c>StartAfter + 1</c> onwards. The session's logical id travels in every request, so it
/// stays the same whichever director or worker serves it; <c>StartAfter</c> is the resume point of a new
/// request (a migrated attempt of the same request adds the router's <c>ResumeFrom</c> to it).
/// </summary>
/// <param name="ConnectionId">The logical session, <c>conn-XXXX</c>.</param>
/// <param name="StartAfter">The last sequence number the client already has (0 at the start).</param>
/// <param name="Total">The last sequence number wanted; 0 for an endless stream.</param>
internal sealed record GenerateRequest(string ConnectionId, long StartAfter, long Total);

/// <summary>One token: <c>token-N</c>, and which worker produced it.</summary>
internal sealed record TokenItem(long Sequence, string Text, string Worker);

/// <summary>Direct mode: "which worker should I stream from?", naming the worker that just failed, if any.</summary>
/// <param name="ConnectionId">The logical session.</param>
/// <param name="FailedWorker">Instance id of the worker the client just lost (0: none).</param>
/// <param name="FailedReason">Why the client gave up on it.</param>
internal sealed record AssignRequest(string ConnectionId, ulong FailedWorker, string? FailedReason);

/// <summary>The worker a director assigned: everything needed to connect to it directly.</summary>
internal sealed record Assignment(string Director, ulong InstanceId, string Worker, string Transport, string Address, IReadOnlyList<InstanceAddress> Alternates)
{
    public InstanceRecord ToRecord() => new()
    {
        InstanceId = InstanceId,
        Namespace = Endpoints.WorkerGenerate.Namespace,
        Component = Endpoints.WorkerGenerate.Component,
        Endpoint = Endpoints.WorkerGenerate.Endpoint,
        Transport = Transport,
        Address = Address,
        Alternates = Alternates,
        Tags = Tags.For("worker", Worker),
    };
}

/// <summary>What a worker can be, as it tells the directors.</summary>
internal enum WorkerState
{
    /// <summary>Serving; in the pool.</summary>
    Ready,

    /// <summary>Recovering from a (simulated) failure: rejects new streams; out of the pool.</summary>
    Recovering,

    /// <summary>Shutting down: out of the pool for good.</summary>
    Leaving,
}

/// <summary>A worker's registration and heartbeat, sent to every director's MGMT port.</summary>
/// <param name="InstanceId">The worker's instance id (its USER server's).</param>
/// <param name="Label">The worker's label.</param>
/// <param name="Transport">Preferred transport of its USER port.</param>
/// <param name="Address">Its USER address.</param>
/// <param name="Alternates">Other transports of its USER port.</param>
/// <param name="State">Ready, recovering or leaving.</param>
/// <param name="RecoverySeconds">While recovering: seconds left.</param>
/// <param name="HeartbeatSeconds">How often it heartbeats; a director drops it after two missed heartbeats.</param>
internal sealed record WorkerRegistration(ulong InstanceId, string Label, string Transport, string Address, IReadOnlyList<InstanceAddress> Alternates, WorkerState State, double RecoverySeconds, double HeartbeatSeconds);

/// <summary>A director's answer to a registration.</summary>
internal sealed record RegistrationReply(string Director, int PoolSize);

/// <summary>A health-check request (MGMT ports).</summary>
internal sealed record HealthRequest(string From);

/// <summary>A health-check answer: who, in what state, and details (a director lists its workers).</summary>
internal sealed record HealthReply(string Name, string Role, string State, IReadOnlyList<string> Details);
