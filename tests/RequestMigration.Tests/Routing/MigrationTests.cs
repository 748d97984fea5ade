using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Tests.Transport;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Routing;

/// <summary>With migration on, a stream that breaks mid-way continues on another instance where it stopped.</summary>
public sealed class MigrationTests : IAsyncLifetime
{
    private readonly TestCluster _cluster = new(TransportKind.Tcp);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public async Task Consumer_sees_one_continuous_stream_with_nothing_lost_or_repeated()
    {
        var seen = new System.Collections.Concurrent.ConcurrentQueue<(string Server, long ResumeFrom, int Attempt, string RequestId)>();
        await _cluster.StartServerAsync<int, string>((n, ctx) => Tokens("a", n, cutAfter: 3, ctx, seen));
        await _cluster.StartServerAsync<int, string>((n, ctx) => Tokens("b", n, cutAfter: 7, ctx, seen));
        await _cluster.StartServerAsync<int, string>((n, ctx) => Tokens("c", n, cutAfter: -1, ctx, seen));
        var router = await _cluster.RouterAsync<int, string>(3, new RouterOptions { Migration = true, MaxAttempts = 4 });

        for (var run = 0; run < 6; run++)
        {
            var items = await TransportConformanceTests.Collect(router.GenerateAsync(12, Ct));
            items.ShouldAllBe(i => !i.IsError, "migration hides failed attempts");
            items.Select(i => i.Data!.Split(':')[1]).ShouldBe(Enumerable.Range(0, 12).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            router.Instances.Reconcile();
        }

        // Retries carried the count already delivered, under the same request id.
        var retried = seen.Where(s => s.Attempt > 1).ToList();
        retried.ShouldNotBeEmpty();
        retried.ShouldAllBe(s => s.ResumeFrom > 0);
        seen.Where(s => s.Attempt == 1).ShouldAllBe(s => s.ResumeFrom == 0);
    }

    [Fact]
    public async Task Without_migration_a_retry_starts_over_and_the_failure_is_visible()
    {
        await _cluster.StartServerAsync<int, string>((n, ctx) => Tokens("a", n, cutAfter: 2, ctx, null));
        var router = await _cluster.RouterAsync<int, string>(1, new RouterOptions { MaxAttempts = 1 });
        var items = new List<Annotated<string>>();
        await Should.ThrowAsync<AttemptsExhaustedException>(async () =>
        {
            await foreach (var i in router.GenerateAsync(5, Ct))
            {
                items.Add(i);
            }
        });
        items.Select(i => i.IsError ? "ERR" : i.Data).ShouldBe(["a:0", "a:1", "ERR"]);
    }

    private static async IAsyncEnumerable<string> Tokens(string server, int count, int cutAfter, RequestContext ctx, System.Collections.Concurrent.ConcurrentQueue<(string, long, int, string)>? seen)
    {
        seen?.Enqueue((server, ctx.ResumeFrom, ctx.Attempt, ctx.RequestId));
        for (var i = (int)ctx.ResumeFrom; i < count; i++)
        {
            if (i == cutAfter)
            {
                throw new AbortStreamException("test cut");
            }

            await Task.Yield();
            yield return $"{server}:{i}";
        }
    }
}
