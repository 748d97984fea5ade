using RequestMigration.Discovery.Instances;

namespace RequestMigration.Serving;

/// <summary>
/// Serves one request: returns the response items as an async stream. Honour
/// <see cref="RequestContext.CancellationToken"/>: it fires when the consumer goes away or the server stops.
/// </summary>
public delegate IAsyncEnumerable<TResponse> EndpointHandler<TRequest, TResponse>(TRequest request, RequestContext context);

/// <summary>What a handler knows about the request it serves.</summary>
public sealed class RequestContext
{
    internal RequestContext(EndpointId endpoint, string requestId, int attempt, ReadOnlyMemory<byte> resume, string connectionId, ulong instanceId, CancellationToken cancellationToken)
    {
        Endpoint = endpoint;
        RequestId = requestId;
        Attempt = attempt;
        Resume = resume;
        ConnectionId = connectionId;
        InstanceId = instanceId;
        CancellationToken = cancellationToken;
    }

    /// <summary>The endpoint called.</summary>
    public EndpointId Endpoint { get; }

    /// <summary>The request id, the same on every attempt of one request.</summary>
    public string RequestId { get; }

    /// <summary>1 on the first attempt, 2 on the first retry, …</summary>
    public int Attempt { get; }

    /// <summary>The raw resume field of the request header (see <see cref="ResumeFrom"/>).</summary>
    public ReadOnlyMemory<byte> Resume { get; }

    /// <summary>
    /// How many response items the consumer already received from earlier attempts of this request (0 on a
    /// first attempt). Sent only by routers with <see cref="Routing.RouterOptions.Migration"/> on: a handler
    /// that supports migration continues from this item, so the consumer gets one continuous stream.
    /// </summary>
    public long ResumeFrom => Wire.ResumeToken.ReadItemsDelivered(Resume.Span);

    /// <summary>The transport connection (or stream) the request arrived on.</summary>
    public string ConnectionId { get; }

    /// <summary>The instance serving the request.</summary>
    public ulong InstanceId { get; }

    /// <summary>Cancelled when the consumer stops reading, cancels, disconnects, or the server stops.</summary>
    public CancellationToken CancellationToken { get; }
}

/// <summary>
/// Throw from a handler to cut the stream without an end frame, exactly as a crash would: the consumer
/// sees <see cref="Wire.StreamErrors.StreamIncomplete"/> and the router fails over. Used for fault injection.
/// </summary>
public sealed class AbortStreamException(string reason = "stream aborted by handler") : Exception(reason);

/// <summary>
/// Throw from a handler to end the response with an error item carrying <paramref name="message"/>. Other
/// exceptions are logged and reported to the consumer only as "endpoint handler failed" (no internals leak).
/// An error whose message contains <see cref="Wire.StreamErrors.StreamIncomplete"/> makes the router fail over.
/// </summary>
public sealed class EndpointErrorException(string message) : Exception(message);
