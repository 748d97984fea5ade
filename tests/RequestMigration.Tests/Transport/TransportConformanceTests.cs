using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Transport;
using RequestMigration.Wire;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Transport;

/// <summary>
/// Behaviour every transport must have, end to end through server, transport and router on real sockets.
/// Runs for TCP + TLS and for QUIC (skipped with the reason where libmsquic is absent).
/// </summary>
public abstract class TransportConformanceTests : IAsyncLifetime
{
    private TestCluster? _cluster;

    protected abstract TransportKind Kind { get; }

    private protected TestCluster Cluster => _cluster!;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>TCP clients multiplex (rm/2) unless a subclass tests the one-request-per-connection fallback.</summary>
    protected virtual bool Multiplexed => true;

    public virtual ValueTask InitializeAsync()
    {
        _cluster = new TestCluster(Kind, Multiplexed);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task Streams_every_item_in_order()
    {
        await Cluster.StartServerAsync<int, int>(Count);
        var router = await Cluster.RouterAsync<int, int>(1);
        var items = await Collect(router.GenerateAsync(2000, Ct));
        items.ShouldAllBe(i => !i.IsError);
        items.Select(i => i.Data).ShouldBe(Enumerable.Range(0, 2000));
    }

    [Fact]
    public async Task Concurrent_streams_are_independent()
    {
        await Cluster.StartServerAsync<int, int>(Count);
        await Cluster.StartServerAsync<int, int>(Count);
        var router = await Cluster.RouterAsync<int, int>(2);
        var results = await Task.WhenAll(Enumerable.Range(1, 40).Select(n => Collect(router.GenerateAsync(n * 5, Ct))));
        for (var i = 0; i < results.Length; i++)
        {
            results[i].Select(x => x.Data).ShouldBe(Enumerable.Range(0, (i + 1) * 5));
        }
    }

    [Fact]
    public async Task Interleaved_streams_on_one_instance_each_get_exactly_their_own_items()
    {
        // One instance, so on TCP every stream shares the multiplexed connection(s) and on QUIC one connection.
        await Cluster.StartServerAsync<string, string>(Tagged);
        var router = await Cluster.RouterAsync<string, string>(1);
        var results = await Task.WhenAll(Enumerable.Range(0, 64).Select(async n =>
        {
            var got = new List<string>();
            await foreach (var item in router.GenerateAsync($"s{n}", Ct))
            {
                item.IsError.ShouldBeFalse(item.Comment);
                got.Add(item.Data!);
                await Task.Yield(); // interleave the consumers as well as the producers
            }

            return got;
        }));
        for (var n = 0; n < results.Length; n++)
        {
            results[n].ShouldBe(Enumerable.Range(0, 100).Select(i => $"s{n}:{i}:{new string((char)('a' + (n % 26)), 300)}"));
        }
    }

    [Fact]
    public async Task A_slow_consumer_does_not_stall_a_fast_stream_beside_it()
    {
        // Each item is 16 KB; the slow stream's 8 MB is far more than any flow-control window holds.
        await Cluster.StartServerAsync<int, string>(Big);
        var router = await Cluster.RouterAsync<int, string>(1);
        var slow = router.GenerateAsync(512, Ct).GetAsyncEnumerator(Ct);
        (await slow.MoveNextAsync()).ShouldBeTrue();
        slow.Current.Data!.Length.ShouldBe(16 * 1024);

        // The slow consumer now reads nothing; its handler must be held back by flow control while this one runs to the end.
        var fast = await Collect(router.GenerateAsync(256, Ct)).WaitAsync(TimeSpan.FromSeconds(20), Ct);
        fast.Count.ShouldBe(256);
        fast.ShouldAllBe(i => !i.IsError && i.Data!.Length == 16 * 1024);

        var rest = 1;
        while (await slow.MoveNextAsync())
        {
            slow.Current.IsError.ShouldBeFalse(slow.Current.Comment);
            rest++;
        }

        rest.ShouldBe(512);
        await slow.DisposeAsync();
    }

    [Fact]
    public async Task Cancelling_one_stream_of_many_cancels_only_that_one()
    {
        var cancelled = new ConcurrentDictionary<string, bool>();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await Cluster.StartServerAsync<string, string>((name, ctx) => FirstThenRest(name, ctx, release.Task, cancelled));
        var router = await Cluster.RouterAsync<string, string>(1);
        using var victim = new CancellationTokenSource();
        var started = new CountdownEvent(10);
        var streams = Enumerable.Range(0, 10).Select(n => Task.Run(async () =>
        {
            var got = new List<string>();
            var token = n == 3 ? victim.Token : Ct;
            await foreach (var item in router.GenerateAsync($"s{n}", token))
            {
                got.Add(item.Data!);
                if (got.Count == 1)
                {
                    started.Signal();
                }
            }

            return got;
        })).ToArray();
        started.Wait(TimeSpan.FromSeconds(20), Ct).ShouldBeTrue();

        await victim.CancelAsync();
        (await Record.ExceptionAsync(() => streams[3])).ShouldBeAssignableTo<OperationCanceledException>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (!cancelled.ContainsKey("s3") && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10, Ct);
        }

        cancelled.Keys.ShouldBe(["s3"]);
        release.SetResult();
        for (var n = 0; n < 10; n++)
        {
            if (n != 3)
            {
                (await streams[n].WaitAsync(TimeSpan.FromSeconds(10), Ct)).ShouldBe([$"s{n}:first", $"s{n}:second", $"s{n}:third"]);
            }
        }

        cancelled.Keys.ShouldBe(["s3"]);
    }

    [Fact]
    public async Task Cancelling_the_consumer_cancels_the_handler_promptly()
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await Cluster.StartServerAsync<string, string>((_, ctx) => OneThenWait(ctx, cancelled));
        var router = await Cluster.RouterAsync<string, string>(1);
        using var cts = new CancellationTokenSource();
        var seen = 0;
        var ex = await Record.ExceptionAsync(async () =>
        {
            await foreach (var item in router.GenerateAsync("x", cts.Token))
            {
                seen++;
                await cts.CancelAsync();
            }
        });
        ex.ShouldBeAssignableTo<OperationCanceledException>();
        seen.ShouldBe(1);
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);
    }

    [Fact]
    public async Task Consumer_that_stops_reading_early_cancels_the_handler()
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await Cluster.StartServerAsync<string, string>((_, ctx) => OneThenWait(ctx, cancelled));
        var router = await Cluster.RouterAsync<string, string>(1);
        await foreach (var item in router.GenerateAsync("x", Ct))
        {
            item.Data.ShouldBe("first");
            break;
        }

        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);
    }

    [Fact]
    public async Task A_cut_stream_fails_over_to_another_instance_and_the_consumer_sees_the_sentinel()
    {
        var a = await Cluster.StartNamedServerAsync("a", count: 5, abortAfter: 2);
        await Cluster.StartNamedServerAsync("b", count: 5);
        var router = await Cluster.RouterAsync<string, string>(2);

        // Round robin starts at a random offset: the first request that reaches "a" shows the failover.
        List<Annotated<string>>? failover = null;
        for (var i = 0; i < 4 && failover is null; i++)
        {
            var items = await Collect(router.GenerateAsync("go", Ct));
            if (items[0].Data == "a:0")
            {
                failover = items;
            }
            else
            {
                items.Select(x => x.Data).ShouldBe(["b:0", "b:1", "b:2", "b:3", "b:4"]);
            }
        }

        failover.ShouldNotBeNull("no request reached instance a");
        failover.Select(x => x.IsError ? "ERR:" + x.Comment : x.Data).ShouldBe(
            ["a:0", "a:1", "ERR:" + StreamErrors.StreamIncomplete, "b:0", "b:1", "b:2", "b:3", "b:4"]);
        router.Instances.Available.Select(r => r.InstanceId).ShouldNotContain(a.InstanceId);
        router.Instances.Source.Select(r => r.InstanceId).ShouldContain(a.InstanceId);
        Cluster.Logs.Contains($"Reporting instance {a.InstanceId:x} down due to stream error: {StreamErrors.StreamIncomplete}").ShouldBeTrue();
        Cluster.Logs.Contains($"inhibiting instance {a.InstanceId:x}").ShouldBeTrue();
    }

    [Fact]
    public async Task Unreachable_instance_is_reported_down_and_skipped()
    {
        var good = await Cluster.StartNamedServerAsync("good");
        var deadPort = FreePort();
        var registry = new InstanceRegistry(Cluster.Store);
        await registry.PutAsync(new InstanceRecord { InstanceId = 0xdead, Namespace = "test", Component = "backend", Endpoint = "generate", Transport = good.Transport, Address = $"127.0.0.1:{deadPort}" }, 0, Ct);
        var router = await Cluster.RouterAsync<string, string>(2);
        for (var i = 0; i < 3; i++)
        {
            var items = await Collect(router.GenerateAsync("x", Ct));
            items.Last().Data.ShouldBe("good:2");
            if (items[0].IsError)
            {
                items[0].Comment!.ShouldContain("cannot reach instance dead");
            }
        }

        router.Instances.Available.Select(r => r.InstanceId).ShouldBe([good.InstanceId]);
    }

    [Fact]
    public async Task Unknown_endpoint_on_an_instance_is_an_error_naming_it()
    {
        var server = await Cluster.StartNamedServerAsync("s");
        var registry = new InstanceRegistry(Cluster.Store);

        // Discovery claims this instance serves test/backend/other; the instance disagrees.
        await registry.PutAsync(new InstanceRecord { InstanceId = server.InstanceId, Namespace = "test", Component = "backend", Endpoint = "other", Transport = server.Transport, Address = server.Address }, 0, Ct);
        // No waiting for the inhibited instance to return: the seed's immediate retries.
        var router = await Cluster.RouterAsync<string, string>(1, new RouterOptions { MaxRetryWait = TimeSpan.Zero }, endpoint: "test/backend/other");
        var items = new List<Annotated<string>>();
        var ex = await Record.ExceptionAsync(async () =>
        {
            await foreach (var i in router.GenerateAsync("x", Ct))
            {
                items.Add(i);
            }
        });
        items.Select(i => i.Comment).ShouldBe([
            $"unknown endpoint 'test/backend/other' on instance {server.InstanceId:x}",
            "no instances found for endpoint test/backend/other",
            "no instances found for endpoint test/backend/other"]);
        ex.ShouldBeOfType<AttemptsExhaustedException>().Message.ShouldBe(
            $"Failed after 3 attempts: no instances found for endpoint test/backend/other; last error: unknown endpoint 'test/backend/other' on instance {server.InstanceId:x}");
    }

    [Fact]
    public async Task Endpoint_error_reaches_the_consumer_and_is_not_retried()
    {
        var calls = 0;
        await Cluster.StartServerAsync<string, string>((_, _) => Failing(() => Interlocked.Increment(ref calls), new EndpointErrorException("bad prompt")));
        await Cluster.StartServerAsync<string, string>((_, _) => Failing(() => Interlocked.Increment(ref calls), new EndpointErrorException("bad prompt")));
        var router = await Cluster.RouterAsync<string, string>(2);
        var ex = await Should.ThrowAsync<EndpointFailedException>(() => Collect(router.GenerateAsync("x", Ct)));
        ex.Message.ShouldBe("bad prompt");
        calls.ShouldBe(1);
        router.Instances.Available.Count.ShouldBe(2);
    }

    [Fact]
    public async Task Unexpected_handler_exception_is_reported_without_internals()
    {
        await Cluster.StartServerAsync<string, string>((_, _) => Failing(() => 0, new InvalidOperationException("secret connection string")));
        var router = await Cluster.RouterAsync<string, string>(1);
        var ex = await Should.ThrowAsync<EndpointFailedException>(() => Collect(router.GenerateAsync("x", Ct)));
        ex.Message.ShouldBe("endpoint handler failed (InvalidOperationException)");
        ex.Message.ShouldNotContain("secret");
    }

    [Fact]
    public async Task Oversized_response_item_is_reported_and_the_server_keeps_serving()
    {
        await Cluster.StartServerAsync<int, string>((n, _) => Sized(n), configure: o => o.MaxFrameSize = 4096);
        var router = await Cluster.RouterAsync<int, string>(1);
        var ex = await Should.ThrowAsync<EndpointFailedException>(() => Collect(router.GenerateAsync(10_000, Ct)));
        ex.Message.ShouldContain("exceeds the maximum frame size of 4096 bytes");
        (await Collect(router.GenerateAsync(100, Ct))).Single().Data!.Length.ShouldBe(100);
    }

    [Fact]
    public async Task Graceful_stop_deregisters_first_and_lets_in_flight_streams_finish()
    {
        var server = await Cluster.StartServerAsync<int, int>(SlowCount);
        var router = await Cluster.RouterAsync<int, int>(1);
        var received = new List<int>();
        var consumer = Task.Run(async () =>
        {
            await foreach (var item in router.GenerateAsync(20, Ct))
            {
                item.IsError.ShouldBeFalse(item.Comment);
                received.Add(item.Data);
            }
        });
        while (received.Count < 2)
        {
            await Task.Delay(5, Ct);
        }

        var stop = server.StopAsync(Ct);
        await consumer.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        await stop.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        received.ShouldBe(Enumerable.Range(0, 20));
        (await new InstanceRegistry(Cluster.Store).ListAsync(EndpointId.Parse(TestCluster.DefaultEndpoint), Ct)).ShouldBeEmpty();
    }

    [Fact]
    public async Task Drain_timeout_cancels_streams_that_do_not_finish()
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await Cluster.StartServerAsync<string, string>((_, ctx) => OneThenWait(ctx, cancelled), configure: o => o.DrainTimeout = TimeSpan.FromMilliseconds(300));

        // The only instance goes away: don't wait for another to appear (RouterOptions.MaxRetryWait).
        var router = await Cluster.RouterAsync<string, string>(1, new RouterOptions { MaxRetryWait = TimeSpan.Zero });
        var items = new List<Annotated<string>>();
        var consumer = Task.Run(async () =>
        {
            try
            {
                await foreach (var i in router.GenerateAsync("x", Ct))
                {
                    items.Add(i);
                }
            }
            catch (RoutingException)
            {
            }
        });
        while (items.Count == 0)
        {
            await Task.Delay(5, Ct);
        }

        var started = DateTime.UtcNow;
        await server.StopAsync(Ct);
        (DateTime.UtcNow - started).ShouldBeLessThan(TimeSpan.FromSeconds(4));
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        await consumer.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        items[0].Data.ShouldBe("first");
        items[1].Comment.ShouldBe(StreamErrors.StreamIncomplete);
    }

    [Fact]
    public async Task A_stalled_instance_is_declared_failed_by_heartbeats_and_its_stream_migrates()
    {
        // Alive but stalled: it accepts, sends two items, then neither produces nor answers pings.
        var stalled = await Cluster.StartServerAsync<int, string>((n, ctx) => Resumable("stalled", n, stallAfter: 2, ctx));
        stalled.AnswerHeartbeats = false;
        await Cluster.StartServerAsync<int, string>((n, ctx) => Resumable("good", n, stallAfter: -1, ctx));
        var runtime = Cluster.Runtime();
        runtime.LoadBalancingPolicies.Register("sticky", () => new RequestMigration.Tests.Routing.RouterFaultTests.StickyPolicy(() => stalled.InstanceId));
        var router = runtime.CreateRouter<int, string>(EndpointId.Parse(TestCluster.DefaultEndpoint), new RouterOptions
        {
            LoadBalancingPolicy = "sticky",
            Migration = true,
            Heartbeat = new RequestMigration.Health.HeartbeatOptions { Interval = TimeSpan.FromMilliseconds(200), Timeout = TimeSpan.FromMilliseconds(100) },
        });
        while (router.Instances.Available.Count < 2)
        {
            await Task.Delay(10, Ct);
        }

        var events = router.Instances.WatchEventsAsync(Ct).GetAsyncEnumerator(Ct);
        var started = DateTime.UtcNow;
        var items = await Collect(router.GenerateAsync(5, Ct)).WaitAsync(TimeSpan.FromSeconds(20), Ct);

        items.Select(i => i.IsError ? "ERR:" + i.Comment : i.Data).ShouldBe(["stalled:0", "stalled:1", "good:2", "good:3", "good:4"]);
        (DateTime.UtcNow - started).ShouldBeLessThan(TimeSpan.FromSeconds(10));
        router.Instances.Available.Select(r => r.InstanceId).ShouldNotContain(stalled.InstanceId);
        (await events.MoveNextAsync()).ShouldBeTrue();
        events.Current.Kind.ShouldBe(RequestMigration.Membership.MembershipEventKind.Failed);
        events.Current.Instance.InstanceId.ShouldBe(stalled.InstanceId);
        events.Current.Reason.ShouldBe("heartbeat failed: 2 pings in a row got no reply within 0.1 s");
        Cluster.Logs.Contains($"heartbeat failure: instance {stalled.InstanceId:x} declared failed").ShouldBeTrue();
    }

    [Fact]
    public async Task A_slow_handler_on_a_live_instance_is_not_declared_failed()
    {
        var server = await Cluster.StartServerAsync<int, string>((n, ctx) => Slow(ctx));
        var router = await Cluster.RouterAsync<int, string>(1, new RouterOptions
        {
            Heartbeat = new RequestMigration.Health.HeartbeatOptions { Interval = TimeSpan.FromMilliseconds(100), Timeout = TimeSpan.FromMilliseconds(80) },
        });

        // The handler is silent for 1.5 s (fifteen heartbeat intervals); the session layer keeps answering.
        var items = await Collect(router.GenerateAsync(0, Ct));
        items.Select(i => i.IsError ? "ERR:" + i.Comment : i.Data).ShouldBe(["before", "after"]);
        router.Instances.Available.Select(r => r.InstanceId).ShouldBe([server.InstanceId]);
        Cluster.Logs.Contains("heartbeat failure").ShouldBeFalse();
        Cluster.Logs.Contains("heartbeat ok").ShouldBeTrue();
    }

    /// <summary>Items "{name}:{i}" from where a migrated request resumes; at <paramref name="stallAfter"/> it stalls until cancelled.</summary>
    internal static async IAsyncEnumerable<string> Resumable(string name, int count, int stallAfter, RequestContext ctx)
    {
        for (var i = (int)ctx.ResumeFrom; i < count; i++)
        {
            if (i == stallAfter)
            {
                await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
            }

            await Task.Yield();
            yield return $"{name}:{i}";
        }
    }

    private static async IAsyncEnumerable<string> Slow(RequestContext ctx)
    {
        yield return "before";
        await Task.Delay(1500, ctx.CancellationToken);
        yield return "after";
    }

    internal static async Task<List<Annotated<T>>> Collect<T>(IAsyncEnumerable<Annotated<T>> stream)
    {
        var list = new List<Annotated<T>>();
        await foreach (var i in stream)
        {
            list.Add(i);
        }

        return list;
    }

    internal static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        return ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
    }

#pragma warning disable CS1998 // async iterators without await are the natural shape for handlers
    private static async IAsyncEnumerable<int> Count(int n, RequestContext ctx)
    {
        for (var i = 0; i < n; i++)
        {
            yield return i;
        }
    }

    private static async IAsyncEnumerable<string> Failing(Func<int> onCall, Exception ex)
    {
        onCall();
        throw ex;
#pragma warning disable CS0162
        yield break;
#pragma warning restore CS0162
    }

    private static async IAsyncEnumerable<string> Sized(int n)
    {
        yield return new string('x', n);
    }

    private static async IAsyncEnumerable<string> Tagged(string name, RequestContext ctx)
    {
        var pad = new string((char)('a' + (int.Parse(name.AsSpan(1)) % 26)), 300);
        for (var i = 0; i < 100; i++)
        {
            yield return $"{name}:{i}:{pad}";
        }
    }

    private static async IAsyncEnumerable<string> Big(int n, RequestContext ctx)
    {
        var item = new string('b', 16 * 1024);
        for (var i = 0; i < n; i++)
        {
            yield return item;
        }
    }
#pragma warning restore CS1998

    private static async IAsyncEnumerable<int> SlowCount(int n, RequestContext ctx)
    {
        for (var i = 0; i < n; i++)
        {
            await Task.Delay(20, ctx.CancellationToken);
            yield return i;
        }
    }

    private static async IAsyncEnumerable<string> FirstThenRest(string name, RequestContext ctx, Task release, ConcurrentDictionary<string, bool> cancelled)
    {
        yield return $"{name}:first";
        try
        {
            await release.WaitAsync(ctx.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            cancelled[name] = true;
            throw;
        }

        yield return $"{name}:second";
        yield return $"{name}:third";
    }

    private static async IAsyncEnumerable<string> OneThenWait(RequestContext ctx, TaskCompletionSource cancelled, [EnumeratorCancellation] CancellationToken unused = default)
    {
        yield return "first";
        try
        {
            await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
        }
        finally
        {
            if (ctx.CancellationToken.IsCancellationRequested)
            {
                cancelled.TrySetResult();
            }
        }
    }
}

/// <summary>The conformance suite on TCP + TLS.</summary>
public sealed class TcpTransportConformanceTests : TransportConformanceTests
{
    protected override TransportKind Kind => TransportKind.Tcp;

    [Fact]
    public async Task Sequential_requests_reuse_one_pooled_connection()
    {
        await Cluster.StartServerAsync<string, string>(ConnectionIdOf);
        var router = await Cluster.RouterAsync<string, string>(1);
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add((await Collect(router.GenerateAsync("x", Ct))).Single().Data!);
        }

        ids.Distinct().ShouldHaveSingleItem();
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> ConnectionIdOf(string _, RequestContext ctx)
    {
        yield return ctx.ConnectionId;
    }
#pragma warning restore CS1998
}

/// <summary>The conformance suite on the one-request-per-connection TCP client (the fallback for servers that speak only rm/1).</summary>
public sealed class LegacyTcpTransportConformanceTests : TransportConformanceTests
{
    protected override TransportKind Kind => TransportKind.Tcp;

    protected override bool Multiplexed => false;
}

/// <summary>The conformance suite on QUIC; every test skips with the reason where System.Net.Quic is unsupported.</summary>
public sealed class QuicTransportConformanceTests : TransportConformanceTests
{
    protected override TransportKind Kind => TransportKind.Quic;

    public override ValueTask InitializeAsync()
    {
        Assert.SkipUnless(TransportKinds.IsQuicSupported, "QUIC skipped: System.Net.Quic reports QuicConnection.IsSupported = false here (libmsquic 2.2+ is not installed); the same behaviour runs on TCP in TcpTransportConformanceTests.");
        return base.InitializeAsync();
    }
}
