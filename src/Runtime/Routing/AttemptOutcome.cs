using System.Net.Quic;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using RequestMigration.Transport;
using RequestMigration.Wire;

namespace RequestMigration.Routing;

/// <summary>How one attempt of a request ended; decides what the router does next.</summary>
internal enum AttemptResult
{
    /// <summary>The response ended with its end frame.</summary>
    Completed,

    /// <summary>Connecting failed before anything was sent (refused, unreachable, timed out). Free retry elsewhere; the instance is reported down.</summary>
    Unreachable,

    /// <summary>A pooled connection the server had closed while it sat idle; nothing reached a handler. Free retry, nobody to blame.</summary>
    StaleConnection,

    /// <summary>The instance answered "shutting down" before doing anything. Free retry elsewhere; reported down quietly.</summary>
    Draining,

    /// <summary>The stream broke or the instance failed the attempt in a retryable way. Counts as an attempt; reported down.</summary>
    Broken,

    /// <summary>The endpoint refused the request (handler error, bad request). Not retried: another instance would do the same.</summary>
    Rejected,

    /// <summary>Our own side failed (certificates, TLS trust, limits, decoding). Not retried and no instance is blamed.</summary>
    LocalFailure,
}

/// <summary>The outcome of one attempt: what happened, the error text, and the exception behind it when there was one.</summary>
internal readonly record struct AttemptOutcome(AttemptResult Result, string Error, Exception? Exception = null)
{
    public static readonly AttemptOutcome Completed = new(AttemptResult.Completed, string.Empty);

    /// <summary>A retry after this outcome does not use up an attempt (bounded separately).</summary>
    public bool IsFree => Result is AttemptResult.Unreachable or AttemptResult.StaleConnection or AttemptResult.Draining;

    /// <summary>The instance is taken out of rotation after this outcome.</summary>
    public bool BlamesInstance => Result is AttemptResult.Unreachable or AttemptResult.Draining or AttemptResult.Broken;

    /// <summary>The call ends after this outcome, whatever budget is left.</summary>
    public bool EndsCall => Result is AttemptResult.Completed or AttemptResult.Rejected or AttemptResult.LocalFailure;

    /// <summary>The result's name on spans (outcome) and metrics (<c>error.type</c>).</summary>
    public static string Name(AttemptResult result) => result switch
    {
        AttemptResult.Completed => "completed",
        AttemptResult.Unreachable => "unreachable",
        AttemptResult.StaleConnection => "stale_connection",
        AttemptResult.Draining => "draining",
        AttemptResult.Broken => "broken",
        AttemptResult.Rejected => "rejected",
        _ => "local_failure",
    };
}

/// <summary>
/// Turns what an attempt saw into an <see cref="AttemptOutcome"/>. Pure functions of their inputs, so the
/// whole table is unit-tested; the router never classifies exceptions anywhere else.
/// </summary>
internal static class AttemptClassifier
{
    /// <summary>Opening a connection or stream to the instance failed; nothing was sent.</summary>
    public static AttemptOutcome ConnectFailed(Exception ex, ulong instanceId, string address)
    {
        if (ex is AuthenticationException)
        {
            return Local(new LocalConfigurationException(
                $"TLS with instance {instanceId:x} at {address} failed: {ex.Message}. The client trusts only the CA in DYN_TLS_CA_FILE; check that it issued the servers' certificates (no instance was reported down)",
                ex));
        }

        // A disposed connector means this router's runtime is shutting down, not that the instance is gone.
        if (IsLocal(ex) || ex is ObjectDisposedException)
        {
            return Local(ex is ObjectDisposedException ? ex : new LocalConfigurationException($"{ex.Message} (a local problem: no instance was reported down)", ex));
        }

        return new AttemptOutcome(AttemptResult.Unreachable, $"cannot reach instance {instanceId:x} at {address}: {ex.Message}", ex);
    }

    /// <summary>Reading the response failed with an exception.</summary>
    /// <param name="ex">What the read threw.</param>
    /// <param name="reused">The stream came from a connection pool.</param>
    /// <param name="framesSeen">Frames of this response read so far.</param>
    public static AttemptOutcome ReceiveFailed(Exception ex, bool reused, int framesSeen)
    {
        if (ex is StreamRefusedException && framesSeen == 0)
        {
            // Refused before anything was done with it: as good as "shutting down", go elsewhere for free.
            return new AttemptOutcome(AttemptResult.Draining, ex.Message, ex);
        }

        if (ex is ProtocolException { Code: ErrorCode.FrameTooLarge })
        {
            // Our limit, not the instance's fault: another instance would send the same item.
            return new AttemptOutcome(AttemptResult.Rejected, $"a response item is too large: {ex.Message}", ex);
        }

        if (ex is ProtocolException)
        {
            return new AttemptOutcome(AttemptResult.Broken, $"{StreamErrors.StreamIncomplete} (instance sent {ex.Message})", ex);
        }

        if (IsLocal(ex))
        {
            return Local(ex);
        }

        return reused && framesSeen == 0
            ? new AttemptOutcome(AttemptResult.StaleConnection, StreamErrors.StreamIncomplete, ex)
            : new AttemptOutcome(AttemptResult.Broken, StreamErrors.StreamIncomplete, ex);
    }

    /// <summary>The response stream ended between frames without an end or error frame.</summary>
    public static AttemptOutcome EndedEarly(bool reused, int framesSeen) =>
        reused && framesSeen == 0
            ? new AttemptOutcome(AttemptResult.StaleConnection, StreamErrors.StreamIncomplete)
            : new AttemptOutcome(AttemptResult.Broken, StreamErrors.StreamIncomplete);

    /// <summary>No frame arrived within <paramref name="timeout"/> (<see cref="RouterOptions.FirstItemTimeout"/>).</summary>
    public static AttemptOutcome TimedOut(TimeSpan timeout) =>
        new(AttemptResult.Broken, $"{StreamErrors.StreamIncomplete} (no response within {timeout.TotalSeconds:0.###} s, RouterOptions.FirstItemTimeout)", new TimeoutException($"no response within {timeout.TotalSeconds:0.###} s"));

    /// <summary>The stream was broken on purpose because the instance was declared failed (heartbeats).</summary>
    public static AttemptOutcome Interrupted(string reason) =>
        new(AttemptResult.Broken, $"{StreamErrors.StreamIncomplete} ({reason})", new HeartbeatFailedException(reason));

    /// <summary>The instance ended the response with an error frame, the <paramref name="framesSeen"/>-th frame.</summary>
    public static AttemptOutcome ErrorFrame(ErrorCode code, string message, int framesSeen)
    {
        if (code == ErrorCode.Unavailable && framesSeen == 1)
        {
            return new AttemptOutcome(AttemptResult.Draining, message);
        }

        return StreamErrors.IsRetryable(code, message)
            ? new AttemptOutcome(AttemptResult.Broken, message)
            : new AttemptOutcome(AttemptResult.Rejected, message);
    }

    /// <summary>The instance sent a frame that has no place in a response.</summary>
    public static AttemptOutcome UnexpectedFrame(FrameType type) =>
        new(AttemptResult.Broken, $"{StreamErrors.StreamIncomplete} (instance sent an unexpected {type} frame)");

    /// <summary>A response item could not be decoded into the router's response type.</summary>
    public static AttemptOutcome UndecodableItem(ulong instanceId, Exception ex) =>
        new(AttemptResult.Rejected, $"cannot decode a response item from instance {instanceId:x}: {ex.Message}", ex);

    /// <summary>
    /// Failures of our own making: missing or unreadable certificates, a server certificate our CA does not
    /// vouch for, a disposed runtime. Retrying elsewhere would fail the same way, and blaming the instance
    /// would take healthy instances out of rotation. (A server whose certificate our CA does not vouch for is
    /// treated the same way: in a deployment every server shares the CA, so a mismatch is a configuration
    /// error, and routing to an instance we cannot authenticate is never right.)
    /// </summary>
    public static bool IsLocal(Exception ex) =>
        ex is FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException
            or ArgumentException or CryptographicException or AuthenticationException;

    /// <summary>Whether <paramref name="ex"/> is an I/O failure of the attempt (as opposed to a bug or a cancellation).</summary>
    public static bool IsAttemptFailure(Exception ex) =>
        ex is not OperationCanceledException
        && (TransportErrors.IsBroken(ex) || ex is SocketException or QuicException or AuthenticationException or FormatException or TimeoutException || IsLocal(ex));

    private static AttemptOutcome Local(Exception ex) => new(AttemptResult.LocalFailure, ex.Message, ex);
}
