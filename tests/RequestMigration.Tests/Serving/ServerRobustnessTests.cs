using System.Collections.Concurrent;
using System.Net.Sockets;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Tests.Transport;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Serving;

/// <summary>Handler failures, cancelled shutdowns, oversized requests and drains under load.</summary>
public sealed class ServerRobustnessTests : IAsyncLifetime
{
    private readonly TestCluster _cluster = new(TransportKind.Tcp);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public async Task A_handler_that_throws_an_IOException_ends_the_response_with_an_error_instead_of_hanging()
    {
        await _cluster.StartServerAsync<string, string>((_, _) => FirstThenThrow(new FileNotFoundException("missing model file")));
        var router = await _cluster.RouterAsync<string, string>(1);
        var items = new List<Annotated<string>>();
        var ex = await Should.ThrowAsync<EndpointFailedException>(async () =>
        {
            await foreach (var i in router.GenerateAsync("x", Ct).WithCancellation(Ct))
            {
                items.Add(i);
            }
        }).WaitAsync(TimeSpan.FromSeconds(5), Ct);
        ex.Message.ShouldBe("endpoint handler failed (FileNotFoundException)");
        items.Select(i => i.Data).ShouldBe(["first"]);
    }

    [Fact]
    public async Task A_stop_whose_token_is_cancelled_still_stops_deregisters_and_closes_the_port()
    {
        var server = await _cluster.StartServerAsync<string, string>((_, ctx) => Forever(ctx));

        // The only instance goes away: don't wait for another to appear (RouterOptions.MaxRetryWait).
        var router = await _cluster.RouterAsync<string, string>(1, new RouterOptions { MaxRetryWait = TimeSpan.Zero });
        var consumer = Task.Run(async () =>
        {
            try
            {
                await foreach (var _ in router.GenerateAsync("x", Ct))
                {
                }
            }
            catch (RoutingException)
            {
            }
        });
        await Task.Delay(100, Ct);

        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await server.StopAsync(cancelled.Token).WaitAsync(TimeSpan.FromSeconds(10), Ct);

        (await new InstanceRegistry(_cluster.Store).ListAsync(EndpointId.Parse(TestCluster.DefaultEndpoint), Ct)).ShouldBeEmpty();
        var port = int.Parse(server.Address.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture);
        using var probe = new TcpClient();
        await Should.ThrowAsync<SocketException>(() => probe.ConnectAsync("127.0.0.1", port, Ct).AsTask());
        await consumer.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }

    [Fact]
    public async Task A_request_over_the_servers_frame_limit_fails_once_without_taking_instances_out_of_rotation()
    {
        await _cluster.StartServerAsync<string, string>((s, _) => Length(s), configure: o => o.MaxFrameSize = 64 * 1024);
        await _cluster.StartServerAsync<string, string>((s, _) => Length(s), configure: o => o.MaxFrameSize = 64 * 1024);
        var router = await _cluster.RouterAsync<string, string>(2);
        var ex = await Should.ThrowAsync<EndpointFailedException>(() => TransportConformanceTests.Collect(router.GenerateAsync(new string('x', 1 << 20), Ct)));
        ex.Message.ShouldContain("exceeds the maximum frame size of 65536 bytes");
        router.Instances.Available.Count.ShouldBe(2);
        (await TransportConformanceTests.Collect(router.GenerateAsync("small", Ct))).Single().Data.ShouldBe("5");
    }

    [Fact]
    public async Task Stopping_one_of_two_servers_under_load_is_invisible_to_consumers()
    {
        var leaving = await _cluster.StartServerAsync<int, int>(Slow);
        await _cluster.StartServerAsync<int, int>(Slow);
        var router = await _cluster.RouterAsync<int, int>(2);
        var load = new ConsumerLoad(router, consumers: 6, Ct);

        await Task.Delay(300, Ct);
        await leaving.StopAsync(Ct);
        await Task.Delay(300, Ct);
        await load.StopAsync(TimeSpan.FromSeconds(20), Ct);

        load.Errors.ShouldBeEmpty();
        load.Completed.ShouldBeGreaterThan(20);
    }

    [Fact]
    public async Task A_pooled_connection_closed_by_the_server_is_replaced_without_a_failed_attempt()
    {
        var port = TransportConformanceTests.FreePort();
        var first = await _cluster.StartServerAsync<string, string>((s, _) => Length(s), configure: o => o.ListenPort = port);
        var router = await _cluster.RouterAsync<string, string>(1);
        (await TransportConformanceTests.Collect(router.GenerateAsync("abc", Ct))).Single().Data.ShouldBe("3");

        // The server goes away (closing the idle pooled connection) and another takes its port.
        await first.StopAsync(Ct);
        var second = await _cluster.StartServerAsync<string, string>((s, _) => Length(s), configure: o => o.ListenPort = port);
        while (!router.Instances.Available.Any(r => r.InstanceId == second.InstanceId))
        {
            await Task.Delay(5, Ct);
        }

        var items = await TransportConformanceTests.Collect(router.GenerateAsync("abcd", Ct));
        items.Select(i => i.IsError ? "ERR " + i.Comment : i.Data).ShouldBe(["4"]);
        router.Instances.Available.Select(r => r.InstanceId).ShouldBe([second.InstanceId]);
    }

    [Fact]
    public async Task An_idle_connection_is_closed_after_the_idle_timeout_and_clients_recover_quietly()
    {
        var server = await _cluster.StartServerAsync<string, string>((s, _) => Length(s), configure: o => o.Limits.IdleTimeout = TimeSpan.FromMilliseconds(300));

        // A peer that connects and sends nothing is dropped.
        var port = int.Parse(server.Address.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture);
        using var idle = new TcpClient();
        await idle.ConnectAsync("127.0.0.1", port, Ct);
        await using var tls = new System.Net.Security.SslStream(idle.GetStream(), false, (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync(new System.Net.Security.SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            ApplicationProtocols = [new System.Net.Security.SslApplicationProtocol("rm/1")],
        }, Ct);
        var read = await tls.ReadAsync(new byte[16], Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(5), Ct);
        read.ShouldBe(0, "the server closes a connection that stays idle past the timeout");

        // A router whose pooled connection was closed that way just opens a new one.
        var router = await _cluster.RouterAsync<string, string>(1);
        (await TransportConformanceTests.Collect(router.GenerateAsync("ab", Ct))).Single().Data.ShouldBe("2");
        await Task.Delay(600, Ct);
        var items = await TransportConformanceTests.Collect(router.GenerateAsync("abc", Ct));
        items.Select(i => i.IsError ? "ERR " + i.Comment : i.Data).ShouldBe(["3"]);
        router.Instances.Available.Count.ShouldBe(1);
    }

    [Fact]
    public async Task A_long_running_stream_is_not_cut_by_the_idle_timeout()
    {
        await _cluster.StartServerAsync<int, int>(Slow, configure: o => o.Limits.IdleTimeout = TimeSpan.FromMilliseconds(200));
        var router = await _cluster.RouterAsync<int, int>(1);
        var items = await TransportConformanceTests.Collect(router.GenerateAsync(100, Ct));
        items.ShouldAllBe(i => !i.IsError);
        items.Count.ShouldBe(100);
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> FirstThenThrow(Exception ex)
    {
        yield return "first";
        throw ex;
    }

    private static async IAsyncEnumerable<string> Length(string s)
    {
        yield return s.Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
#pragma warning restore CS1998

    private static async IAsyncEnumerable<string> Forever(RequestContext ctx)
    {
        yield return "tick";
        await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
    }

    private static async IAsyncEnumerable<int> Slow(int n, RequestContext ctx)
    {
        for (var i = 0; i < n; i++)
        {
            await Task.Delay(5, ctx.CancellationToken);
            yield return i;
        }
    }
}
