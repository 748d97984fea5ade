using Microsoft.Extensions.Logging;

namespace RequestMigration.Diagnostics;

/// <summary>
/// The runtime's structured log messages. Property names follow the project's convention
/// (<c>instance.id</c>, <c>endpoint</c>, <c>request.id</c>, <c>connection.id</c>, <c>attempt</c>), which the
/// [LoggerMessage] generator cannot bind, so the delegates are defined (and cached) here. Instance ids are
/// hex, as in discovery keys. Values a peer controls (request ids, endpoint paths, reasons that quote them,
/// error text from the other side) go through <see cref="LogValues.Sanitize"/> here, so no caller can forget.
/// </summary>
internal static class Log
{
    // Reasons quote peer values inside a sentence of our own; room for both, still far from a flood.
    private const int MaxReasonLength = 512;

    private static readonly Action<ILogger, string, string, string, string, int, Exception?> s_reportingDown =
        LoggerMessage.Define<string, string, string, string, int>(LogLevel.Warning, new EventId(100, "InstanceDown"),
            "Reporting instance {instance.id} down due to stream error: {error} (endpoint={endpoint} request.id={request.id} attempt={attempt})");

    private static readonly Action<ILogger, string, int, int, string, Exception?> s_retrying =
        LoggerMessage.Define<string, int, int, string>(LogLevel.Information, new EventId(101, "Retrying"),
            "retrying request {request.id}: attempt {attempt} of {attempts} for endpoint={endpoint}");

    private static readonly Action<ILogger, string, string, Exception?> s_inhibiting =
        LoggerMessage.Define<string, string>(LogLevel.Information, new EventId(102, "Inhibiting"),
            "inhibiting instance {instance.id} for endpoint={endpoint}");

    private static readonly Action<ILogger, string, string, string, string, string, Exception?> s_serving =
        LoggerMessage.Define<string, string, string, string, string>(LogLevel.Information, new EventId(200, "Serving"),
            "server: serving {endpoint} as instance {instance.id} over {transport} at {address} (store {store})");

    private static readonly Action<ILogger, string, string, string, Exception?> s_badInput =
        LoggerMessage.Define<string, string, string>(LogLevel.Warning, new EventId(201, "BadInput"),
            "server: bad input on {connection.id} from {remote}: {reason}");

    private static readonly Action<ILogger, string, string, string, Exception?> s_rejected =
        LoggerMessage.Define<string, string, string>(LogLevel.Warning, new EventId(202, "Rejected"),
            "server: rejected request {request.id} on {connection.id}: {reason}");

    private static readonly Action<ILogger, string, string, string, Exception?> s_cut =
        LoggerMessage.Define<string, string, string>(LogLevel.Information, new EventId(203, "StreamCut"),
            "server: stream of request {request.id} to {endpoint} cut by handler ({reason})");

    private static readonly Action<ILogger, string, string, string, Exception?> s_cancelled =
        LoggerMessage.Define<string, string, string>(LogLevel.Debug, new EventId(204, "Cancelled"),
            "server: request {request.id} to {endpoint} cancelled: {reason}");

    private static readonly Action<ILogger, string, string, Exception?> s_handlerFailed =
        LoggerMessage.Define<string, string>(LogLevel.Error, new EventId(205, "HandlerFailed"),
            "server: handler of {endpoint} failed for request {request.id}");

    public static void ReportingDown(ILogger logger, ulong instanceId, string error, string endpoint, string requestId, int attempt)
    {
        if (logger.IsEnabled(LogLevel.Warning))
        {
            s_reportingDown(logger, instanceId.ToString("x"), LogValues.Sanitize(error, MaxReasonLength), endpoint, LogValues.Sanitize(requestId), attempt, null);
        }
    }

    public static void Retrying(ILogger logger, string requestId, int attempt, int attempts, string endpoint)
    {
        if (logger.IsEnabled(LogLevel.Information))
        {
            s_retrying(logger, LogValues.Sanitize(requestId), attempt, attempts, endpoint, null);
        }
    }

    public static void Inhibiting(ILogger logger, ulong instanceId, string endpoint)
    {
        if (logger.IsEnabled(LogLevel.Information))
        {
            s_inhibiting(logger, instanceId.ToString("x"), endpoint, null);
        }
    }

    public static void Serving(ILogger logger, string endpoint, ulong instanceId, string transport, string address, string store) =>
        s_serving(logger, endpoint, instanceId.ToString("x"), transport, address, store, null);

    public static void BadInput(ILogger logger, string connectionId, string remote, string reason)
    {
        if (logger.IsEnabled(LogLevel.Warning))
        {
            s_badInput(logger, connectionId, remote, LogValues.Sanitize(reason, MaxReasonLength), null);
        }
    }

    public static void Rejected(ILogger logger, string connectionId, string requestId, string reason)
    {
        if (logger.IsEnabled(LogLevel.Warning))
        {
            s_rejected(logger, LogValues.Sanitize(requestId), connectionId, LogValues.Sanitize(reason, MaxReasonLength), null);
        }
    }

    public static void StreamCut(ILogger logger, string requestId, string endpoint, string reason)
    {
        if (logger.IsEnabled(LogLevel.Information))
        {
            s_cut(logger, LogValues.Sanitize(requestId), LogValues.Sanitize(endpoint), LogValues.Sanitize(reason, MaxReasonLength), null);
        }
    }

    /// <summary>A request's handler was stopped early; <paramref name="cause"/> is the transport error behind it, if any.</summary>
    public static void Cancelled(ILogger logger, string requestId, string endpoint, string reason, Exception? cause = null)
    {
        if (logger.IsEnabled(LogLevel.Debug))
        {
            s_cancelled(logger, LogValues.Sanitize(requestId), LogValues.Sanitize(endpoint), LogValues.Sanitize(reason, MaxReasonLength), cause);
        }
    }

    public static void HandlerFailed(ILogger logger, Exception ex, string requestId, string endpoint)
    {
        if (logger.IsEnabled(LogLevel.Error))
        {
            s_handlerFailed(logger, LogValues.Sanitize(endpoint), LogValues.Sanitize(requestId), ex);
        }
    }
}
