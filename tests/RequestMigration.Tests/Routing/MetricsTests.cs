using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Hosting;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;
using RequestMigration.Hosting;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Transport;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Transport.TransportConformanceTests;
using Attr = RequestMigration.Diagnostics.RuntimeTelemetry.Attributes;
using Names = RequestMigration.Diagnostics.RuntimeMetrics.Instruments;

namespace RequestMigration.Tests.Routing;

/// <summary>
/// The runtime's metrics (issue 12, "Metrics"), collected with Microsoft.Extensions.Diagnostics.Testing's
/// <see cref="MetricCollector{T}"/> from a meter factory private to each test, so tests running in parallel
/// never see each other's measurements.
/// </summary>
public sealed class MetricsTests : IAsyncLifetime
{
    private const string Endpoint = TestCluster.DefaultEndpoint;
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private readonly TestCluster _cluster;

    public MetricsTests() => _cluster = new TestCluster(TransportKind.Tcp) { MeterFactory = Meters };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private IMeterFactory Meters => _services.GetRequiredService<IMeterFactory>();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await _cluster.DisposeAsync();
        await _services.DisposeAsync();
    }

    [Fact]
    public async Task A_migrated_call_records_its_attempts_failover_gap_and_durations()
    {
        using var attempts = Collector<long>(Names.RouterAttempts);
        using var failovers = Collector<long>(Names.RouterFailovers);
        using var gaps = Collector<double>(Names.RouterFailoverGap);
        using var firstItem = Collector<double>(Names.RouterTimeToFirstItem);
        using var durations = Collector<double>(Names.RouterCallDuration);
        using var active = Collector<long>(Names.RouterActiveStreams);
        using var inhibited = Collector<long>(Names.RouterInhibited);
        using var requests = Collector<long>(Names.ServerRequests);
        using var serving = Collector<long>(Names.ServerActiveStreams);

        var a = await _cluster.StartNamedServerAsync("a", count: 5, abortAfter: 2);
        var b = await _cluster.StartNamedServerAsync("b", count: 5);
        var router = await StickyRouterAsync(2, a.InstanceId, new RouterOptions { Migration = true });
        var items = await Collect(router.GenerateAsync("x", Ct));
        items.Select(i => i.Data).ShouldBe(["a:0", "a:1", "b:2", "b:3", "b:4"]);

        // Both attempts counted (the cut one made progress: not a free retry), each with its instance.
        var counted = attempts.GetMeasurementSnapshot();
        counted.Select(m => (m.Value, Tag(m.Tags, Attr.InstanceId), Tag(m.Tags, Attr.ErrorType))).ShouldBe([(1L, Hex(a.InstanceId), "broken"), (1L, Hex(b.InstanceId), null)]);
        counted.ShouldAllBe(m => Tag(m.Tags, Attr.Endpoint) == Endpoint && Tag(m.Tags, Attr.Transport) == "tcp");

        failovers.GetMeasurementSnapshot().Select(m => (m.Value, Tag(m.Tags, Attr.Endpoint), Tag(m.Tags, Attr.ErrorType))).ShouldBe([(1L, Endpoint, "broken")]);
        inhibited.GetMeasurementSnapshot().Select(m => (m.Value, Tag(m.Tags, Attr.Endpoint))).ShouldBe([(1L, Endpoint)]);

        var gap = gaps.GetMeasurementSnapshot().ShouldHaveSingleItem();
        gap.Value.ShouldBeGreaterThan(0);
        Tag(gap.Tags, Attr.ErrorType).ShouldBe("broken");
        var first = firstItem.GetMeasurementSnapshot().ShouldHaveSingleItem();
        var duration = durations.GetMeasurementSnapshot().ShouldHaveSingleItem();
        duration.Value.ShouldBeGreaterThanOrEqualTo(first.Value);
        duration.Value.ShouldBeGreaterThanOrEqualTo(gap.Value);
        duration.Tags.Keys.ShouldBe([Attr.Endpoint], "a completed call has no error.type");

        active.GetMeasurementSnapshot().Select(m => m.Value).ShouldBe([1L, -1L]);

        // Each server counted its request; their streams are released just after the response's last frame.
        requests.GetMeasurementSnapshot().ShouldAllBe(m => Tag(m.Tags, Attr.Endpoint) == Endpoint && Tag(m.Tags, Attr.Transport) == "tcp");
        requests.GetMeasurementSnapshot().Sum(m => m.Value).ShouldBe(2);
        await WaitUntilAsync(() => serving.GetMeasurementSnapshot().Count == 4);
        serving.GetMeasurementSnapshot().Sum(m => m.Value).ShouldBe(0);
        serving.GetMeasurementSnapshot().ShouldAllBe(m => Tag(m.Tags, Attr.Transport) == "tcp");
    }

    [Fact]
    public async Task Free_retries_are_not_counted_as_attempts()
    {
        using var attempts = Collector<long>(Names.RouterAttempts);
        using var failovers = Collector<long>(Names.RouterFailovers);
        using var inhibited = Collector<long>(Names.RouterInhibited);
        var good = await _cluster.StartNamedServerAsync("good");
        await new InstanceRegistry(_cluster.Store).PutAsync(InstanceRecords.Record(EndpointId.Parse(Endpoint), 0xdead) with { Address = $"127.0.0.1:{FreePort()}" }, 0, Ct);

        // The dead instance first: refused, a free retry on the good one.
        var router = await StickyRouterAsync(2, 0xdead, new RouterOptions());
        var items = await Collect(router.GenerateAsync("x", Ct));
        items.Select(i => i.IsError ? "ERR" : i.Data).ShouldBe(["good:0", "good:1", "good:2"]);

        attempts.GetMeasurementSnapshot().Select(m => (Tag(m.Tags, Attr.InstanceId), Tag(m.Tags, Attr.ErrorType))).ShouldBe([(Hex(good.InstanceId), null)]);
        failovers.GetMeasurementSnapshot().Select(m => Tag(m.Tags, Attr.ErrorType)).ShouldBe(["unreachable"], "leaving the dead instance is a failover, though not an attempt");
        inhibited.GetMeasurementSnapshot().Sum(m => m.Value).ShouldBe(1);
    }

    [Fact]
    public async Task A_heartbeat_failure_is_counted_with_the_failover_it_causes()
    {
        using var heartbeatFailures = Collector<long>(Names.RouterHeartbeatFailures);
        using var failovers = Collector<long>(Names.RouterFailovers);
        var stalled = await _cluster.StartServerAsync<string, string>((_, ctx) => Resumable("stalled", 4, stallAfter: 2, ctx));
        stalled.AnswerHeartbeats = false;
        await _cluster.StartServerAsync<string, string>((_, ctx) => Resumable("good", 4, stallAfter: -1, ctx));
        var router = await StickyRouterAsync(2, stalled.InstanceId, new RouterOptions
        {
            Migration = true,
            Heartbeat = new RequestMigration.Health.HeartbeatOptions { Interval = TimeSpan.FromMilliseconds(200), Timeout = TimeSpan.FromMilliseconds(100) },
        });

        (await Collect(router.GenerateAsync("x", Ct)).WaitAsync(TimeSpan.FromSeconds(20), Ct)).Select(i => i.Data).ShouldBe(["stalled:0", "stalled:1", "good:2", "good:3"]);

        var counted = heartbeatFailures.GetMeasurementSnapshot().ShouldHaveSingleItem();
        counted.Value.ShouldBe(1);
        Tag(counted.Tags, Attr.Endpoint).ShouldBe(Endpoint);
        failovers.GetMeasurementSnapshot().ShouldHaveSingleItem().Value.ShouldBe(1);
    }

    [Fact]
    public async Task Failed_calls_carry_error_type_on_their_duration_and_attempts()
    {
        using var attempts = Collector<long>(Names.RouterAttempts);
        using var durations = Collector<double>(Names.RouterCallDuration);
        using var active = Collector<long>(Names.RouterActiveStreams);
        using var rejected = Collector<long>(Names.ServerRejected);
        await _cluster.StartServerAsync<string, string>((_, _) => Refuse());

        // The endpoint refuses: not retried, the call fails with the endpoint's error.
        var router = await _cluster.RouterAsync<string, string>(1);
        await Should.ThrowAsync<EndpointFailedException>(() => Collect(router.GenerateAsync("x", Ct)));
        Tag(attempts.LastMeasurement!.Tags, Attr.ErrorType).ShouldBe("rejected");
        Tag(durations.LastMeasurement!.Tags, Attr.ErrorType).ShouldBe(nameof(EndpointFailedException));

        // No instance at all.
        var nobody = _cluster.Runtime().CreateRouter<string, string>(EndpointId.Parse("test/backend/nobody"), new RouterOptions());
        await Should.ThrowAsync<NoInstancesException>(() => Collect(nobody.GenerateAsync("x", Ct)));
        Tag(durations.LastMeasurement!.Tags, Attr.ErrorType).ShouldBe(nameof(NoInstancesException));

        // A record sends the router to a server that does not serve its endpoint: the server rejects it
        // (error.type from the wire code, no endpoint attribute: a peer could invent any name).
        var server = await _cluster.StartNamedServerAsync("elsewhere");
        await new InstanceRegistry(_cluster.Store).PutAsync(InstanceRecords.Record(EndpointId.Parse("test/backend/other"), 0xbad) with { Address = server.Address }, 0, Ct);
        var misrouted = await _cluster.RouterAsync<string, string>(1, new RouterOptions { MaxAttempts = 1 }, endpoint: "test/backend/other");
        await Should.ThrowAsync<AttemptsExhaustedException>(() => Collect(misrouted.GenerateAsync("x", Ct)));
        Tag(durations.LastMeasurement!.Tags, Attr.ErrorType).ShouldBe(nameof(AttemptsExhaustedException));
        var rejection = rejected.GetMeasurementSnapshot().ShouldHaveSingleItem();
        rejection.Tags.OrderBy(t => t.Key).Select(t => (t.Key, (string?)t.Value)).ShouldBe([(Attr.ErrorType, "unknown_endpoint"), (Attr.Transport, "tcp")]);

        durations.GetMeasurementSnapshot().Count.ShouldBe(3);
        active.GetMeasurementSnapshot().Sum(m => m.Value).ShouldBe(0);
    }

    [Fact]
    public async Task A_cancelled_call_is_counted_as_cancelled_and_leaves_the_active_streams()
    {
        using var attempts = Collector<long>(Names.RouterAttempts);
        using var durations = Collector<double>(Names.RouterCallDuration);
        using var active = Collector<long>(Names.RouterActiveStreams);
        await _cluster.StartServerAsync<string, string>((_, ctx) => Slow(ctx.CancellationToken));
        var router = await _cluster.RouterAsync<string, string>(1);

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        await Should.ThrowAsync<OperationCanceledException>(async () =>
        {
            await foreach (var item in router.GenerateAsync("x", cts.Token))
            {
                active.GetMeasurementSnapshot().Sum(m => m.Value).ShouldBe(1, "in progress");
                await cts.CancelAsync();
            }
        });

        Tag(durations.LastMeasurement!.Tags, Attr.ErrorType).ShouldBe(nameof(OperationCanceledException));
        attempts.LastMeasurement!.Tags.ContainsKey(Attr.ErrorType).ShouldBeFalse("an abandoned attempt did not fail");
        active.GetMeasurementSnapshot().Sum(m => m.Value).ShouldBe(0);
    }

    [Fact]
    public void Instruments_have_OpenTelemetry_units_and_kinds()
    {
        _cluster.Runtime();
        var published = new ConcurrentDictionary<string, Instrument>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Scope == Meters && instrument.Meter.Name == RuntimeMetrics.MeterName)
                {
                    published[instrument.Name] = instrument;
                }
            },
        };
        listener.Start();

        var expected = new Dictionary<string, (string Unit, Type Kind)>
        {
            [Names.RouterCallDuration] = ("s", typeof(Histogram<double>)),
            [Names.RouterTimeToFirstItem] = ("s", typeof(Histogram<double>)),
            [Names.RouterFailoverGap] = ("s", typeof(Histogram<double>)),
            [Names.RouterAttempts] = ("{attempt}", typeof(Counter<long>)),
            [Names.RouterFailovers] = ("{failover}", typeof(Counter<long>)),
            [Names.RouterActiveStreams] = ("{stream}", typeof(UpDownCounter<long>)),
            [Names.RouterInhibited] = ("{instance}", typeof(Counter<long>)),
            [Names.RouterHeartbeatFailures] = ("{instance}", typeof(Counter<long>)),
            [Names.RouterMembershipEventsDropped] = ("{event}", typeof(Counter<long>)),
            [Names.ServerRequests] = ("{request}", typeof(Counter<long>)),
            [Names.ServerRejected] = ("{request}", typeof(Counter<long>)),
            [Names.ServerLimited] = ("{refusal}", typeof(Counter<long>)),
            [Names.ServerActiveStreams] = ("{stream}", typeof(UpDownCounter<long>)),
        };
        published.Keys.Order(StringComparer.Ordinal).ShouldBe(expected.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, (unit, kind)) in expected)
        {
            published[name].Unit.ShouldBe(unit, name);
            published[name].ShouldBeOfType(kind, name);
            name.ShouldStartWith("request_migration.");
        }
    }

    [Fact]
    public async Task Without_a_meter_factory_runtimes_record_on_the_process_wide_meter()
    {
        // The meter dotnet-counters and AddMeter("RequestMigration") find by name; other tests record on it too,
        // so this one looks only at its own endpoint.
        var endpoint = $"metrics{Guid.NewGuid():N}"[..20] + "/backend/generate";
        var attempts = 0L;
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == RuntimeMetrics.MeterName && instrument.Meter.Scope is null && instrument.Name == Names.RouterAttempts)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == Attr.Endpoint && (string?)tag.Value == endpoint)
                {
                    Interlocked.Add(ref attempts, value);
                }
            }
        });
        listener.Start();

        await using var cluster = new TestCluster(TransportKind.Tcp);
        await cluster.StartNamedServerAsync("a");
        await cluster.StartServerAsync<string, string>((_, _) => Refuse(), endpoint);
        var router = await cluster.RouterAsync<string, string>(1, endpoint: endpoint);
        await Should.ThrowAsync<EndpointFailedException>(() => Collect(router.GenerateAsync("x", Ct)));
        Interlocked.Read(ref attempts).ShouldBe(1);
    }

    [Fact]
    public async Task The_DI_extension_gives_the_runtime_the_containers_meter_factory()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["DYN_STORE_KV"] = "mem",
            ["RequestMigration:Transport"] = "Tcp",
            ["RequestMigration:DeregistrationGracePeriod"] = "00:00:00",
        });
        builder.Services.AddRequestMigration(builder.Configuration);
        builder.Services.AddRequestMigrationEndpoint<string, string>("app/echo/upper", _ => (s, _) => Upper(s));
        builder.Services.AddPushRouter<string, string>("app/echo/upper");
        using var host = builder.Build();
        using var requests = new MetricCollector<long>(host.Services.GetRequiredService<IMeterFactory>(), RuntimeMetrics.MeterName, Names.ServerRequests);
        using var attempts = new MetricCollector<long>(host.Services.GetRequiredService<IMeterFactory>(), RuntimeMetrics.MeterName, Names.RouterAttempts);
        await host.StartAsync(Ct);

        var router = host.Services.GetRequiredService<PushRouter<string, string>>();
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);
        (await Collect(router.GenerateAsync("ab", Ct))).Select(i => i.Data).ShouldBe(["AB"]);
        requests.GetMeasurementSnapshot().Select(m => Tag(m.Tags, Attr.Endpoint)).ShouldBe(["app/echo/upper"]);
        attempts.GetMeasurementSnapshot().Count.ShouldBe(1);
        await host.StopAsync(Ct);
    }

    private static string? Tag(IReadOnlyDictionary<string, object?> tags, string name) => tags.TryGetValue(name, out var v) ? v as string : null;

    private static string Hex(ulong id) => id.ToString("x", CultureInfo.InvariantCulture);

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, "condition not met within 10 s");
            await Task.Delay(10, Ct);
        }
    }

    private MetricCollector<T> Collector<T>(string instrument)
        where T : struct => new(Meters, RuntimeMetrics.MeterName, instrument);

    private async Task<PushRouter<string, string>> StickyRouterAsync(int expected, ulong preferred, RouterOptions options)
    {
        var runtime = _cluster.Runtime();
        runtime.LoadBalancingPolicies.Register("sticky", () => new RouterFaultTests.StickyPolicy(() => preferred));
        options.LoadBalancingPolicy = "sticky";
        var router = runtime.CreateRouter<string, string>(EndpointId.Parse(Endpoint), options);
        while (router.Instances.Available.Count < expected)
        {
            await Task.Delay(10, Ct);
        }

        return router;
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Refuse()
    {
        throw new EndpointErrorException("not today");
#pragma warning disable CS0162 // An iterator needs a yield to be one.
        yield break;
#pragma warning restore CS0162
    }

    private static async IAsyncEnumerable<string> Upper(string s)
    {
        yield return s.ToUpperInvariant();
    }
#pragma warning restore CS1998

    private static async IAsyncEnumerable<string> Slow([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        for (var i = 0; ; i++)
        {
            yield return $"item {i}";
            await Task.Delay(50, ct);
        }
    }
}
