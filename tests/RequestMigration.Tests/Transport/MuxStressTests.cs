using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Transport;

/// <summary>Many concurrent short requests over multiplexed TCP connections: every one completes, none breaks.</summary>
public sealed class MuxStressTests : IAsyncLifetime
{
    private readonly TestCluster _cluster = new(TransportKind.Tcp);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public async Task Thousands_of_concurrent_short_requests_all_complete()
    {
        await _cluster.StartServerAsync<int, int>(Count);
        await _cluster.StartServerAsync<int, int>(Count);
        var router = await _cluster.RouterAsync<int, int>(2, new RouterOptions { MaxAttempts = 1, InhibitDuration = TimeSpan.Zero });
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var done = await CallersAsync(router, errors, i => i < 150);

        errors.ShouldBeEmpty(string.Join("\n", errors.Take(5)));
        done.ShouldBe(32 * 150);
    }

    [Fact]
    public async Task Concurrent_callers_for_several_seconds_in_one_runtime_all_complete()
    {
        var runtime = _cluster.Runtime(o => o.Limits.MaxConcurrentStreamsPerConnection = 10_000);
        var endpoint = RequestMigration.Discovery.Instances.EndpointId.Parse(TestCluster.DefaultEndpoint);
        for (var s = 0; s < 2; s++)
        {
            await runtime.CreateServer(new ServerOptions()).AddEndpoint<int, string>(endpoint, Payloads).StartAsync(Ct);
        }

        var router = runtime.CreateRouter<int, string>(endpoint, new RouterOptions { MaxAttempts = 1, InhibitDuration = TimeSpan.Zero });
        while (router.Instances.Available.Count < 2)
        {
            await Task.Delay(10, Ct);
        }

        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var until = DateTime.UtcNow.AddSeconds(3);
        var done = await CallersAsync(router, errors, _ => DateTime.UtcNow < until);

        errors.ShouldBeEmpty($"{errors.Count} errors after {done} requests: " + string.Join("\n", errors.Take(5)));
        TestContext.Current.TestOutputHelper?.WriteLine($"{done} requests");
    }

    /// <summary>32 callers each sending 10-item requests while <paramref name="more"/> (given the caller's request count) says so; returns how many delivered all 10 items.</summary>
    private static async Task<int> CallersAsync<T>(PushRouter<int, T> router, System.Collections.Concurrent.ConcurrentQueue<string> errors, Func<int, bool> more)
    {
        var done = 0;
        await Task.WhenAll(Enumerable.Range(0, 32).Select(_ => Task.Run(async () =>
        {
            for (var i = 0; more(i); i++)
            {
                var n = 0;
                try
                {
                    await foreach (var item in router.GenerateAsync(10, Ct))
                    {
                        if (item.IsError)
                        {
                            errors.Enqueue(item.Comment!);
                        }
                        else
                        {
                            n++;
                        }
                    }
                }
                catch (RoutingException ex)
                {
                    errors.Enqueue(ex.Message);
                }

                if (n == 10)
                {
                    Interlocked.Increment(ref done);
                }
            }
        }, Ct)));

        return done;
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Payloads(int n, RequestContext ctx)
    {
        for (var i = 0; i < n; i++)
        {
            yield return "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        }
    }

    private static async IAsyncEnumerable<int> Count(int n, RequestContext ctx)
    {
        for (var i = 0; i < n; i++)
        {
            yield return i;
        }
    }
#pragma warning restore CS1998
}
