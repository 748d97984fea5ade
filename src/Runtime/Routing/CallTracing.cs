using System.Diagnostics;
using System.Globalization;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;
using RequestMigration.Transport;
using Attr = RequestMigration.Diagnostics.RuntimeTelemetry.Attributes;

namespace RequestMigration.Routing;

/// <summary>
/// The spans of a router call (see <see cref="RuntimeTelemetry"/>). Everything is a no-op when nobody listens
/// to the source. Parents are passed explicitly: an async iterator cannot rely on <see cref="Activity.Current"/>
/// across its yields.
/// </summary>
internal static class CallTracing
{
    public static Activity? StartCall(string endpoint, string requestId)
    {
        var call = RuntimeTelemetry.Source.StartActivity("request_migration.call", ActivityKind.Client);
        if (call is not null)
        {
            call.DisplayName = endpoint;
            call.SetTag(Attr.Endpoint, endpoint);
            call.SetTag(Attr.RequestId, requestId);
        }

        return call;
    }

    public static Activity? StartAttempt(Activity? call, string endpoint, InstanceRecord instance, int attempt, long resumeFrom)
    {
        var span = call is null
            ? RuntimeTelemetry.Source.StartActivity("request_migration.attempt", ActivityKind.Client)
            : RuntimeTelemetry.Source.StartActivity("request_migration.attempt", ActivityKind.Client, call.Context);
        if (span is not null)
        {
            span.DisplayName = endpoint;
            span.SetTag(Attr.Endpoint, endpoint);
            span.SetTag(Attr.InstanceId, instance.InstanceId.ToString("x", CultureInfo.InvariantCulture));
            span.SetTag(Attr.Transport, instance.Transport);
            span.SetTag(Attr.Attempt, attempt);
            if (resumeFrom > 0)
            {
                span.SetTag(Attr.ResumeFrom, resumeFrom);
            }

            try
            {
                var (host, port) = Addresses.Split(instance.Address);
                span.SetTag(Attr.ServerAddress, host);
                span.SetTag(Attr.ServerPort, port);
            }
            catch (FormatException)
            {
                span.SetTag(Attr.ServerAddress, instance.Address);
            }
        }

        return span;
    }

    /// <summary>The trace context to send: the attempt's span, else whatever the caller is part of.</summary>
    public static (string? TraceParent, string? TraceState) Propagate(Activity? span)
    {
        var context = span ?? Activity.Current;
        return context is { IdFormat: ActivityIdFormat.W3C, Id: { } id } ? (id, context.TraceStateString) : (null, null);
    }

    public static void EndAttempt(Activity? span, AttemptOutcome outcome, long items)
    {
        if (span is null)
        {
            return;
        }

        var result = outcome.Error is null ? "abandoned" : AttemptOutcome.Name(outcome.Result);
        span.SetTag(Attr.Outcome, result);
        span.SetTag("request_migration.items", items);
        if (outcome.Exception is HeartbeatFailedException hb)
        {
            span.AddEvent(new ActivityEvent("heartbeat_failure", tags: new ActivityTagsCollection { ["reason"] = hb.Message }));
        }

        if (outcome.Error is not null && outcome.Result != AttemptResult.Completed)
        {
            span.SetTag(Attr.ErrorType, result);
            span.SetStatus(ActivityStatusCode.Error, outcome.Error);
        }

        span.Dispose();
    }

    /// <summary>The call leaves <paramref name="from"/> for another attempt after it failed (counted or not).</summary>
    public static void Failover(Activity? call, InstanceRecord from, AttemptOutcome outcome, int attempt)
    {
        call?.AddEvent(new ActivityEvent("failover", tags: new ActivityTagsCollection
        {
            [Attr.InstanceId] = from.InstanceId.ToString("x", CultureInfo.InvariantCulture),
            [Attr.Attempt] = attempt,
            [Attr.Outcome] = AttemptOutcome.Name(outcome.Result),
            ["reason"] = outcome.Error,
        }));
    }

    /// <summary>An attempt's failure took its instance out of rotation.</summary>
    public static void Inhibited(Activity? call, InstanceRecord instance)
    {
        call?.AddEvent(new ActivityEvent("inhibit", tags: new ActivityTagsCollection
        {
            [Attr.InstanceId] = instance.InstanceId.ToString("x", CultureInfo.InvariantCulture),
        }));
    }

    public static void EndCall(Activity? call, Exception? error)
    {
        if (call is null)
        {
            return;
        }

        call.SetCustomProperty(EndedProperty, true);
        if (error is not null)
        {
            call.SetTag(Attr.ErrorType, error.GetType().Name);
            call.SetStatus(ActivityStatusCode.Error, error.Message);
        }
    }

    private const string EndedProperty = "request_migration.call_ended";

    /// <summary>
    /// Ends the call span however the call ended. A call that neither completed nor failed with an error of the
    /// router's was stopped by its consumer: cancelled, it is an error (<c>OperationCanceledException</c>, as its
    /// metrics count it); abandoned early without cancellation, it is not.
    /// </summary>
    public readonly struct CallEnd(Activity? call, CancellationToken cancellation) : IDisposable
    {
        public void Dispose()
        {
            if (call is null)
            {
                return;
            }

            if (call.GetCustomProperty(EndedProperty) is null && cancellation.IsCancellationRequested)
            {
                call.SetTag(Attr.ErrorType, nameof(OperationCanceledException));
                call.SetStatus(ActivityStatusCode.Error, "the call was cancelled");
            }

            call.Dispose();
        }
    }
}

/// <summary>The instance was declared failed by heartbeats and the attempt's stream broken on purpose.</summary>
internal sealed class HeartbeatFailedException(string reason) : IOException(reason);
