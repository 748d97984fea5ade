namespace RequestMigration.Wire;

/// <summary>
/// Kinds of frame. Every frame is <c>[u32 payload length, big-endian][u8 type][payload]</c>.
/// A request stream carries one <see cref="Request"/> from the client, then <see cref="Data"/> frames from
/// the server ending in exactly one <see cref="End"/> or <see cref="Error"/>. Heartbeats
/// (<see cref="Ping"/> / <see cref="Pong"/>) may be interleaved with either direction.
/// </summary>
internal enum FrameType : byte
{
    /// <summary>Client to server: <see cref="RequestHeader"/> followed by the request payload.</summary>
    Request = 1,

    /// <summary>Server to client: one response item.</summary>
    Data = 2,

    /// <summary>Server to client: the response failed; <c>[u8 code][utf-8 message]</c>. Ends the response.</summary>
    Error = 3,

    /// <summary>Server to client: the response is complete. Empty payload.</summary>
    End = 4,

    /// <summary>
    /// Client to server, any time on a request stream: a heartbeat, <c>[u64 sequence]</c>. The server's session
    /// layer (not the handler) answers with <see cref="Pong"/>, even while a response is streaming.
    /// </summary>
    Ping = 5,

    /// <summary>Server to client: the answer to a <see cref="Ping"/>, echoing its sequence. Not part of the response.</summary>
    Pong = 6,
}

/// <summary>Why a response failed; decides whether the router tries another instance.</summary>
internal enum ErrorCode : byte
{
    /// <summary>The stream ended before the response completed (<see cref="StreamErrors.StreamIncomplete"/>). Retried elsewhere.</summary>
    StreamIncomplete = 1,

    /// <summary>The endpoint's handler failed. Not retried: another instance would fail the same way.</summary>
    Handler = 2,

    /// <summary>The request was malformed (bad frame, bad header, undecodable payload). Not retried.</summary>
    BadRequest = 3,

    /// <summary>This instance does not serve the endpoint asked for. Retried elsewhere.</summary>
    UnknownEndpoint = 4,

    /// <summary>The instance is shutting down or overloaded. Retried elsewhere.</summary>
    Unavailable = 5,

    /// <summary>A frame exceeded the maximum frame size. Not retried.</summary>
    FrameTooLarge = 6,
}

/// <summary>Well-known error texts.</summary>
public static class StreamErrors
{
    /// <summary>
    /// What a consumer sees when a response stream closes without its end frame (peer crash, reset, lost
    /// connection). The router treats any error containing this text as a failed attempt.
    /// </summary>
    public const string StreamIncomplete = "Stream ended before generation completed";

    /// <summary>Whether an error code means "try another instance".</summary>
    internal static bool IsRetryable(ErrorCode code, string? message) =>
        code is ErrorCode.StreamIncomplete or ErrorCode.UnknownEndpoint or ErrorCode.Unavailable
        || (message is not null && message.Contains(StreamIncomplete, StringComparison.Ordinal));
}

/// <summary>A peer broke the wire protocol (malformed, truncated or oversized frame), or ran into a server limit.</summary>
internal sealed class ProtocolException(string message, ErrorCode code = ErrorCode.BadRequest, string? limit = null) : IOException(message)
{
    /// <summary>The error code sent to the peer, when a response can still be sent.</summary>
    public ErrorCode Code { get; } = code;

    /// <summary>The <c>ServerLimits</c> property the input ran into (logged and counted as a limit), or null.</summary>
    public string? Limit { get; } = limit;
}
