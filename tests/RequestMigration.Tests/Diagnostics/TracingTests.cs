using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Trace;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Tests.Routing;
using RequestMigration.Transport;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Transport.TransportConformanceTests;

namespace RequestMigration.Tests.Diagnostics;

/// <summary>
/// Traces through OpenTelemetry's in-memory exporter: a migrated call across two servers is one trace whose
/// attempt spans sit on different instances, each with its server span as a child.
/// </summary>
public sealed class TracingTests : IAsyncLifetime
{
    private readonly TestCluster _cluster = new(TransportKind.Tcp);
    private readonly List<Activity> _spans = [];
    private TracerProvider? _tracing;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        _tracing = Sdk.CreateTracerProviderBuilder().AddSource(RuntimeTelemetry.SourceName).AddInMemoryExporter(_spans).Build();
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _cluster.DisposeAsync();
        _tracing?.Dispose();
    }

    [Fact]
    public async Task A_migrated_call_is_one_trace_with_an_attempt_span_per_instance_and_server_spans_under_them()
    {
        const string Endpoint = "trace/backend/migrated";
        var a = await _cluster.StartServerAsync<string, string>((_, ctx) => Items("a", 4, cutAt: 2, ctx), Endpoint);
        var b = await _cluster.StartServerAsync<string, string>((_, ctx) => Items("b", 4, cutAt: -1, ctx), Endpoint);
        var runtime = _cluster.Runtime();
        runtime.LoadBalancingPolicies.Register("sticky", () => new RouterFaultTests.StickyPolicy(() => a.InstanceId));
        var router = runtime.CreateRouter<string, string>(EndpointId.Parse(Endpoint), new RouterOptions { LoadBalancingPolicy = "sticky", Migration = true });
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);
        while (router.Instances.Available.Count < 2)
        {
            await Task.Delay(10, Ct);
        }

        (await Collect(router.GenerateAsync("x", Ct))).Select(i => i.Data).ShouldBe(["a:0", "a:1", "b:2", "b:3"]);
        _tracing!.ForceFlush();

        var mine = _spans.Where(s => (s.GetTagItem(RuntimeTelemetry.Attributes.Endpoint) as string) == Endpoint).ToList();
        var call = mine.Where(s => s.OperationName == "request_migration.call").ShouldHaveSingleItem();
        call.Kind.ShouldBe(ActivityKind.Client);
        var attempts = mine.Where(s => s.OperationName == "request_migration.attempt").OrderBy(s => (int)s.GetTagItem(RuntimeTelemetry.Attributes.Attempt)!).ToList();
        var servers = mine.Where(s => s.OperationName == "request_migration.server").ToList();
        attempts.Count.ShouldBe(2);
        servers.Count.ShouldBe(2);
        mine.ShouldAllBe(s => s.TraceId == call.TraceId);

        // Attempts: children of the call, one per instance, with where they went and how they ended.
        attempts.ShouldAllBe(s => s.ParentSpanId == call.SpanId && s.Kind == ActivityKind.Client);
        Tag(attempts[0], RuntimeTelemetry.Attributes.InstanceId).ShouldBe(a.InstanceId.ToString("x"));
        Tag(attempts[1], RuntimeTelemetry.Attributes.InstanceId).ShouldBe(b.InstanceId.ToString("x"));
        Tag(attempts[0], RuntimeTelemetry.Attributes.Transport).ShouldBe("tcp");
        Tag(attempts[0], RuntimeTelemetry.Attributes.ServerAddress).ShouldBe("127.0.0.1");
        attempts[0].GetTagItem(RuntimeTelemetry.Attributes.ServerPort).ShouldBe(int.Parse(a.Address.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture));
        Tag(attempts[0], RuntimeTelemetry.Attributes.Outcome).ShouldBe("broken");
        Tag(attempts[0], RuntimeTelemetry.Attributes.ErrorType).ShouldBe("broken");
        attempts[0].Status.ShouldBe(ActivityStatusCode.Error);
        Tag(attempts[1], RuntimeTelemetry.Attributes.Outcome).ShouldBe("completed");
        attempts[1].GetTagItem(RuntimeTelemetry.Attributes.ResumeFrom).ShouldBe(2L);

        // Server spans: each the child of the attempt that reached it, on that instance.
        foreach (var (attempt, server) in new[] { (attempts[0], a), (attempts[1], b) })
        {
            var span = servers.Where(s => s.ParentSpanId == attempt.SpanId).ShouldHaveSingleItem();
            span.Kind.ShouldBe(ActivityKind.Server);
            Tag(span, RuntimeTelemetry.Attributes.InstanceId).ShouldBe(server.InstanceId.ToString("x"));
        }

        Tag(servers.Single(s => s.ParentSpanId == attempts[0].SpanId), RuntimeTelemetry.Attributes.Outcome).ShouldBe("cut");

        // Failover and inhibit are events on the call span.
        var failover = call.Events.Where(e => e.Name == "failover").ShouldHaveSingleItem();
        failover.Tags.ShouldContain(t => t.Key == RuntimeTelemetry.Attributes.InstanceId && (string)t.Value! == a.InstanceId.ToString("x"));
        call.Events.ShouldContain(e => e.Name == "inhibit");
    }

    [Fact]
    public async Task A_heartbeat_failure_is_an_event_on_the_attempt_it_interrupted()
    {
        const string Endpoint = "trace/backend/stalled";
        var stalled = await _cluster.StartServerAsync<string, string>((_, ctx) => Resumable("stalled", 4, stallAfter: 2, ctx), Endpoint);
        stalled.AnswerHeartbeats = false;
        var good = await _cluster.StartServerAsync<string, string>((_, ctx) => Resumable("good", 4, stallAfter: -1, ctx), Endpoint);
        var runtime = _cluster.Runtime();
        runtime.LoadBalancingPolicies.Register("sticky", () => new RouterFaultTests.StickyPolicy(() => stalled.InstanceId));
        var router = runtime.CreateRouter<string, string>(EndpointId.Parse(Endpoint), new RouterOptions
        {
            LoadBalancingPolicy = "sticky",
            Migration = true,
            Heartbeat = new RequestMigration.Health.HeartbeatOptions { Interval = TimeSpan.FromMilliseconds(200), Timeout = TimeSpan.FromMilliseconds(100) },
        });
        while (router.Instances.Available.Count < 2)
        {
            await Task.Delay(10, Ct);
        }

        (await Collect(router.GenerateAsync("x", Ct)).WaitAsync(TimeSpan.FromSeconds(20), Ct)).Select(i => i.Data).ShouldBe(["stalled:0", "stalled:1", "good:2", "good:3"]);
        _tracing!.ForceFlush();

        var attempts = _spans.Where(s => s.OperationName == "request_migration.attempt" && (s.GetTagItem(RuntimeTelemetry.Attributes.Endpoint) as string) == Endpoint)
            .OrderBy(s => (int)s.GetTagItem(RuntimeTelemetry.Attributes.Attempt)!).ToList();
        attempts.Count.ShouldBe(2);
        Tag(attempts[0], RuntimeTelemetry.Attributes.InstanceId).ShouldBe(stalled.InstanceId.ToString("x"));
        attempts[0].Status.ShouldBe(ActivityStatusCode.Error);
        var heartbeat = attempts[0].Events.Where(e => e.Name == "heartbeat_failure").ShouldHaveSingleItem();
        heartbeat.Tags.ShouldContain(t => t.Key == "reason" && ((string)t.Value!).Contains("pings in a row got no reply", StringComparison.Ordinal));

        // The healthy attempt has none; the call records the failover away from the stalled instance.
        Tag(attempts[1], RuntimeTelemetry.Attributes.InstanceId).ShouldBe(good.InstanceId.ToString("x"));
        attempts[1].Events.ShouldNotContain(e => e.Name == "heartbeat_failure");
        var call = _spans.Single(s => s.SpanId == attempts[0].ParentSpanId);
        call.Events.ShouldContain(e => e.Name == "failover");
    }

    [Fact]
    public async Task A_cancelled_call_and_a_call_with_no_instance_end_their_spans_as_errors()
    {
        const string Endpoint = "trace/backend/cancelled";
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await _cluster.StartServerAsync<string, string>((_, ctx) => Hanging(started, ctx), Endpoint);
        var router = await _cluster.RouterAsync<string, string>(1, endpoint: Endpoint);
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            var call = Collect(router.GenerateAsync("x", cts.Token));
            await started.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
            await cts.CancelAsync();
            await Should.ThrowAsync<OperationCanceledException>(() => call.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        }

        var empty = _cluster.Runtime().CreateRouter<string, string>(EndpointId.Parse("trace/backend/nobody"), new RouterOptions());
        await Should.ThrowAsync<NoInstancesException>(() => Collect(empty.GenerateAsync("x", Ct)));
        _tracing!.ForceFlush();

        var cancelled = _spans.Single(s => s.OperationName == "request_migration.call" && Tag(s, RuntimeTelemetry.Attributes.Endpoint) == Endpoint);
        cancelled.Status.ShouldBe(ActivityStatusCode.Error);
        Tag(cancelled, RuntimeTelemetry.Attributes.ErrorType).ShouldBe(nameof(OperationCanceledException));
        var nobody = _spans.Single(s => s.OperationName == "request_migration.call" && Tag(s, RuntimeTelemetry.Attributes.Endpoint) == "trace/backend/nobody");
        nobody.Status.ShouldBe(ActivityStatusCode.Error);
        Tag(nobody, RuntimeTelemetry.Attributes.ErrorType).ShouldBe(nameof(NoInstancesException));
    }

    [Fact]
    public async Task Without_a_listener_on_the_router_side_the_request_carries_no_trace_context()
    {
        // Only server spans are recorded: a traceparent in the request header would make the server span a child
        // of a remote parent, so a server span that is a root shows the header carried none.
        _tracing!.Dispose();
        _tracing = null;
        using var serverOnly = new ActivityListener
        {
            ShouldListenTo = source => source.Name == RuntimeTelemetry.SourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> o) => o.Kind == ActivityKind.Server ? ActivitySamplingResult.AllDataAndRecorded : ActivitySamplingResult.None,
        };
        ActivitySource.AddActivityListener(serverOnly);
        Activity? seen = null;
        await _cluster.StartServerAsync<string, string>((_, ctx) => Record(() => seen = Activity.Current), "trace/backend/quiet");
        var router = await _cluster.RouterAsync<string, string>(1, endpoint: "trace/backend/quiet");
        (await Collect(router.GenerateAsync("x", Ct))).Single().Data.ShouldBe("ok");

        seen.ShouldNotBeNull("the server span is recorded");
        seen.OperationName.ShouldBe("request_migration.server");
        seen.HasRemoteParent.ShouldBeFalse();
        seen.ParentSpanId.ShouldBe(default);
    }

    private static string? Tag(Activity span, string name) => span.GetTagItem(name)?.ToString();

    private static async IAsyncEnumerable<string> Items(string name, int count, int cutAt, RequestContext ctx)
    {
        for (var i = (int)ctx.ResumeFrom; i < count; i++)
        {
            if (i == cutAt)
            {
                throw new AbortStreamException("trace test cut");
            }

            await Task.Yield();
            yield return $"{name}:{i}";
        }
    }

    private static async IAsyncEnumerable<string> Hanging(TaskCompletionSource started, RequestContext ctx)
    {
        yield return "first";
        started.TrySetResult();
        await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
        yield return "never";
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Record(Action record)
    {
        record();
        yield return "ok";
    }
#pragma warning restore CS1998
}
