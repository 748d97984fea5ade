using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Tests.Transport;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Serving;

/// <summary>
/// Server limits seen through a router, on both transports (issue 8, "Limits"): a refusal over a limit is a
/// free "go elsewhere", so consumers notice nothing while another instance has room; a consumer that stops
/// reading is cut off after the write timeout; requests over the request frame limit are refused by size.
/// </summary>
public abstract class ServerLimitsTransportTests : IAsyncLifetime
{
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TestCluster? _cluster;

    protected abstract TransportKind Kind { get; }

    private protected TestCluster Cluster => _cluster!;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public virtual ValueTask InitializeAsync()
    {
        _cluster = new TestCluster(Kind);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        _release.TrySetResult();
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task Requests_over_the_server_stream_limit_go_to_another_instance_unnoticed()
    {
        var full = await StartAsync("full", o => o.Limits.MaxConcurrentStreams = 1);
        await StartAsync("spare");
        var router = await Cluster.RouterAsync<string, string>(2);
        await using var held = await HoldAsync(router, full.InstanceId);

        var results = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => TransportConformanceTests.Collect(router.GenerateAsync("quick", Ct))));

        results.SelectMany(r => r).Select(i => i.IsError ? "ERR " + i.Comment : i.Data).ShouldAllBe(d => d == "spare:quick");
        Cluster.Logs.Contains("MaxConcurrentStreams reached").ShouldBeTrue(string.Join('\n', Cluster.Logs.Entries));
        _release.TrySetResult();
        (await held.RestAsync()).ShouldBe(["full:released"]);
    }

    [Fact]
    public async Task Connections_over_the_connection_limit_are_refused_and_their_requests_go_to_another_instance_unnoticed()
    {
        var full = await StartAsync("full", o => o.Limits.MaxConcurrentConnections = 1);
        await StartAsync("spare");
        var holder = await Cluster.RouterAsync<string, string>(2);
        await using var held = await HoldAsync(holder, full.InstanceId);

        // Another process: its connection to "full" is one too many.
        var other = await Cluster.RouterAsync<string, string>(2);
        var results = new List<Annotated<string>>();
        for (var i = 0; i < 5; i++)
        {
            results.AddRange(await TransportConformanceTests.Collect(other.GenerateAsync("quick", Ct)));
        }

        results.Select(i => i.IsError ? "ERR " + i.Comment : i.Data).ShouldAllBe(d => d == "spare:quick");
        Cluster.Logs.Contains("MaxConcurrentConnections reached").ShouldBeTrue(string.Join('\n', Cluster.Logs.Entries));
        _release.TrySetResult();
        (await held.RestAsync()).ShouldBe(["full:released"]);
    }

    [Fact]
    public async Task A_request_over_the_request_frame_limit_is_refused_naming_the_limit_and_smaller_ones_are_served()
    {
        await StartAsync("s");
        var router = await Cluster.RouterAsync<string, string>(1);

        var ex = await Should.ThrowAsync<EndpointFailedException>(() => TransportConformanceTests.Collect(router.GenerateAsync(new string('x', 5 * 1024 * 1024), Ct)));

        ex.Message.ShouldContain("exceeds the maximum frame size of 4194304 bytes");
        var items = await TransportConformanceTests.Collect(router.GenerateAsync(new string('y', 3 * 1024 * 1024), Ct));
        items.Single().Data.ShouldBe("s:" + (3 * 1024 * 1024));
        router.Instances.Available.Count.ShouldBe(1, "a request that is too large is not the instance's fault");
    }

    [Fact]
    public async Task A_consumer_that_stops_reading_has_its_request_cancelled_after_the_write_timeout()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var produced = 0;
        var stopped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = Cluster.Runtime(o => o.Limits.WriteTimeout = TimeSpan.FromSeconds(5), time).CreateServer()
            .AddEndpoint<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint), (_, ctx) => Flood(ctx, () => Interlocked.Increment(ref produced), stopped));
        await server.StartAsync(Ct);
        var router = await Cluster.RouterAsync<string, string>(1);

        // Read one item, then stop reading without cancelling or going away.
        await using var consumer = router.GenerateAsync("go", Ct).GetAsyncEnumerator(Ct);
        (await consumer.MoveNextAsync()).ShouldBeTrue();
        await WaitForStallAsync(() => Volatile.Read(ref produced));
        stopped.Task.IsCompleted.ShouldBeFalse("without the write timeout the handler stays pinned");

        // The write that blocks is armed with the timeout; on a busy machine the stall seen above may be a slow
        // write just before it, so move the clock until the blocked one times out.
        for (var i = 0; i < 50 && !stopped.Task.IsCompleted; i++)
        {
            time.Advance(TimeSpan.FromSeconds(5));
            await Task.WhenAny(stopped.Task, Task.Delay(200, Ct));
        }

        await stopped.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        (await WaitForLogAsync("WriteTimeout reached")).ShouldBeTrue(string.Join('\n', Cluster.Logs.Entries));
        Cluster.Logs.Entries.First(e => e.Message.Contains("WriteTimeout reached", StringComparison.Ordinal)).Message.ShouldContain("DYN_WRITE_TIMEOUT_SECS");
        for (var i = 0; i < 250 && server.StreamCount != 0; i++)
        {
            await Task.Delay(20, Ct);
        }

        server.StreamCount.ShouldBe(0, "the request's slot is given back");
    }

    private protected Task<EndpointServer> StartAsync(string name, Action<RuntimeOptions>? configure = null) =>
        Cluster.StartServerAsync<string, string>((req, ctx) => Handle(name, req, ctx), configure: configure);

    /// <summary>Starts a request on <paramref name="instance"/> that stays in progress until the test releases it.</summary>
    private protected static async Task<HeldRequest> HoldAsync(PushRouter<string, string> router, ulong instance)
    {
        var e = router.DirectAsync("hold", instance, Ct).GetAsyncEnumerator(Ct);
        (await e.MoveNextAsync()).ShouldBeTrue();
        e.Current.Data.ShouldEndWith(":held", Case.Sensitive, e.Current.Comment);
        return new HeldRequest(e);
    }

    private async IAsyncEnumerable<string> Handle(string name, string request, RequestContext ctx)
    {
        if (request != "hold")
        {
            yield return $"{name}:{(request.Length > 100 ? request.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) : request)}";
            yield break;
        }

        yield return $"{name}:held";
        await _release.Task.WaitAsync(ctx.CancellationToken);
        yield return $"{name}:released";
    }

    private static async IAsyncEnumerable<string> Flood(RequestContext ctx, Func<int> onItem, TaskCompletionSource stopped, [EnumeratorCancellation] CancellationToken unused = default)
    {
        var item = new string('z', 64 * 1024);
        try
        {
            while (!ctx.CancellationToken.IsCancellationRequested)
            {
                onItem();
                await Task.Yield();
                yield return item;
            }
        }
        finally
        {
            stopped.TrySetResult();
        }
    }

    /// <summary>Waits until <paramref name="progress"/> stops moving: the handler is blocked writing to a consumer that does not read.</summary>
    private static async Task WaitForStallAsync(Func<int> progress)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        var last = -1;
        while (true)
        {
            var now = progress();
            if (now == last && now > 0)
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"the handler kept producing ({now} items)");
            }

            last = now;
            await Task.Delay(300, Ct);
        }
    }

    private async Task<bool> WaitForLogAsync(string text)
    {
        for (var i = 0; i < 500 && !Cluster.Logs.Contains(text); i++)
        {
            await Task.Delay(20, Ct);
        }

        return Cluster.Logs.Contains(text);
    }

    private protected sealed class HeldRequest(IAsyncEnumerator<Annotated<string>> e) : IAsyncDisposable
    {
        public async Task<List<string?>> RestAsync()
        {
            var rest = new List<string?>();
            while (await e.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10), Ct))
            {
                rest.Add(e.Current.IsError ? "ERR " + e.Current.Comment : e.Current.Data);
            }

            return rest;
        }

        public ValueTask DisposeAsync() => e.DisposeAsync();
    }
}

/// <summary>The limits on TCP + TLS.</summary>
public sealed class TcpServerLimitsTransportTests : ServerLimitsTransportTests
{
    protected override TransportKind Kind => TransportKind.Tcp;
}

/// <summary>The limits on QUIC, plus the per-connection stream limit, which only QUIC can reach.</summary>
public sealed class QuicServerLimitsTransportTests : ServerLimitsTransportTests
{
    protected override TransportKind Kind => TransportKind.Quic;

    public override ValueTask InitializeAsync()
    {
        Assert.SkipUnless(TransportKinds.IsQuicSupported, "QUIC skipped: libmsquic 2.2+ is not installed here; the same limits run on TCP.");
        return base.InitializeAsync();
    }

    [Fact]
    public async Task Requests_over_the_per_connection_stream_limit_go_to_another_instance_unnoticed()
    {
        var full = await StartAsync("full", o => o.Limits.MaxConcurrentStreamsPerConnection = 2);
        await StartAsync("spare");
        var router = await Cluster.RouterAsync<string, string>(2);
        await using var first = await HoldAsync(router, full.InstanceId);
        await using var second = await HoldAsync(router, full.InstanceId);

        var results = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => TransportConformanceTests.Collect(router.GenerateAsync("quick", Ct))));

        results.SelectMany(r => r).Select(i => i.IsError ? "ERR " + i.Comment : i.Data).ShouldAllBe(d => d == "spare:quick");
        Cluster.Logs.Contains("MaxConcurrentStreamsPerConnection reached").ShouldBeTrue(string.Join('\n', Cluster.Logs.Entries));
        full.StreamCount.ShouldBe(2);
    }
}
