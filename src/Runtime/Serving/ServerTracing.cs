using System.Diagnostics;
using System.Globalization;
using RequestMigration.Diagnostics;
using RequestMigration.Wire;
using Attr = RequestMigration.Diagnostics.RuntimeTelemetry.Attributes;

namespace RequestMigration.Serving;

/// <summary>
/// The server span of a request: a child of the router's attempt span when the request header carries its
/// trace context (W3C <c>traceparent</c>), so one trace follows a call across instances. Current while the
/// handler runs, so spans the handler starts nest under it.
/// </summary>
internal static class ServerTracing
{
    public static Activity? Start(RequestHeader header, string endpoint, ulong instanceId)
    {
        if (!RuntimeTelemetry.Source.HasListeners())
        {
            return null;
        }

        ActivityContext.TryParse(header.TraceParent, header.TraceState, isRemote: true, out var parent);
        var span = RuntimeTelemetry.Source.StartActivity("request_migration.server", ActivityKind.Server, parent);
        if (span is not null)
        {
            span.DisplayName = endpoint;
            span.SetTag(Attr.Endpoint, endpoint);
            span.SetTag(Attr.InstanceId, instanceId.ToString("x", CultureInfo.InvariantCulture));
            span.SetTag(Attr.RequestId, LogValues.Sanitize(header.RequestId));
            span.SetTag(Attr.Attempt, header.Attempt);
            var resume = ResumeToken.ReadItemsDelivered(header.Resume.Span);
            if (resume > 0)
            {
                span.SetTag(Attr.ResumeFrom, resume);
            }
        }

        return span;
    }

    /// <param name="span">The span, or null when nobody listens.</param>
    /// <param name="outcome"><c>completed</c>, <c>cut</c>, <c>cancelled</c>, <c>consumer_gone</c>, <c>endpoint_error</c>, <c>handler_failed</c>, <c>protocol_error</c>.</param>
    public static void End(Activity? span, string outcome)
    {
        if (span is null)
        {
            return;
        }

        span.SetTag(Attr.Outcome, outcome);
        if (outcome is not ("completed" or "cancelled" or "consumer_gone"))
        {
            span.SetTag(Attr.ErrorType, outcome);
            span.SetStatus(ActivityStatusCode.Error);
        }

        span.Dispose();
    }
}
