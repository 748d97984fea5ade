using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Etcd.EtcdTestSupport;

namespace RequestMigration.Tests.Etcd;

/// <summary>What happens when etcd cannot be reached or is misconfigured; no etcd needed.</summary>
public sealed class EtcdUnavailableTests
{
    [Fact]
    public async Task Unreachable_endpoint_fails_fast_with_an_error_naming_it()
    {
        var port = EtcdFixture.FreePort();
        await using var store = new EtcdKeyValueStore(new EtcdStoreOptions { Endpoints = [new Uri($"http://127.0.0.1:{port}")] });
        Func<Task>[] calls =
        [
            async () => await store.GetAsync("a/b"),
            async () => await store.ListAsync("a/"),
            async () => await store.PutAsync("a/b", B("x")),
            async () => await store.DeleteAsync("a/b"),
            async () => await store.GrantLeaseAsync(TimeSpan.FromSeconds(5)),
            async () => await store.KeepAliveAsync(42),
            async () => await store.RevokeLeaseAsync(42),
        ];
        foreach (var call in calls)
        {
            var sw = Stopwatch.StartNew();
            var ex = await Should.ThrowAsync<StoreUnavailableException>(call);
            sw.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(3));
            ex.Message.ShouldContain($"127.0.0.1:{port}");
        }
    }

    [Fact]
    public async Task Endpoint_that_never_answers_fails_within_the_call_timeout()
    {
        // It accepts connections and then says nothing, like a hung etcd or a black-holed route: only the deadline helps.
        await using var silent = new SilentListener();
        await using var store = new EtcdKeyValueStore(new EtcdStoreOptions { Endpoints = [silent.Url] });
        var sw = Stopwatch.StartNew();
        var ex = await Should.ThrowAsync<StoreUnavailableException>(async () => await store.GetAsync("a/b"));
        sw.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(3));
        sw.Elapsed.ShouldBeGreaterThan(TimeSpan.FromSeconds(1.5));
        ex.Message.ShouldContain($"127.0.0.1:{silent.Port}");
    }

    [Fact]
    public async Task Endpoint_that_never_answers_is_skipped_for_a_dead_one_within_the_deadline()
    {
        // Two endpoints share the 2 s budget, so the second is still asked after the first hung.
        await using var silent = new SilentListener();
        var dead = EtcdFixture.FreePort();
        var options = new EtcdStoreOptions { Endpoints = [silent.Url, new Uri($"http://127.0.0.1:{dead}")] };
        await using var store = new EtcdKeyValueStore(options);
        var sw = Stopwatch.StartNew();
        var ex = await Should.ThrowAsync<StoreUnavailableException>(async () => await store.GetAsync("a/b"));
        sw.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(3));
        ex.Message.ShouldContain($"127.0.0.1:{silent.Port}: DeadlineExceeded");
        ex.Message.ShouldContain($"127.0.0.1:{dead}: Unavailable");
    }

    [Fact]
    public async Task Every_endpoint_is_named_when_all_fail()
    {
        var (p1, p2) = (EtcdFixture.FreePort(), EtcdFixture.FreePort());
        var options = new EtcdStoreOptions { Endpoints = EtcdStoreOptions.ParseEndpoints($"http://127.0.0.1:{p1}, http://127.0.0.1:{p2}") };
        await using var store = new EtcdKeyValueStore(options);
        var ex = await Should.ThrowAsync<StoreUnavailableException>(async () => await store.PutAsync("a/b", B("x")));
        ex.Message.ShouldContain($"127.0.0.1:{p1}");
        ex.Message.ShouldContain($"127.0.0.1:{p2}");
    }

    [Fact]
    public async Task Cancelling_a_call_is_reported_as_cancellation()
    {
        await using var silent = new SilentListener();
        await using var store = new EtcdKeyValueStore(new EtcdStoreOptions { Endpoints = [silent.Url] });
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        await Should.ThrowAsync<OperationCanceledException>(async () => await store.GetAsync("a/b", cts.Token));
    }

    [Fact]
    public async Task A_watch_on_a_dead_etcd_keeps_retrying_warns_once_and_ends_on_cancellation()
    {
        var logger = new CapturingLogger<EtcdKeyValueStore>();
        var port = EtcdFixture.FreePort();
        var options = new EtcdStoreOptions
        {
            Endpoints = [new Uri($"http://127.0.0.1:{port}")],
            WatchRetryInitialDelay = TimeSpan.FromMilliseconds(50),
            WatchRetryMaxDelay = TimeSpan.FromMilliseconds(200),
        };
        await using var store = new EtcdKeyValueStore(options, logger: logger);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1.5));
        var seen = 0;
        var ex = await Xunit.Record.ExceptionAsync(async () =>
        {
            await foreach (var _ in store.WatchAsync("a/", cts.Token))
            {
                seen++;
            }
        });
        (ex is null or OperationCanceledException).ShouldBeTrue($"unexpected {ex}");
        seen.ShouldBe(0);
        var warnings = logger.Entries().Where(e => e.Level == LogLevel.Warning).ToList();
        warnings.Count.ShouldBe(1, string.Join('\n', warnings.Select(w => w.Message)));
        warnings[0].Message.ShouldContain($"127.0.0.1:{port}");
    }

    [Theory]
    [InlineData("http://127.0.0.1:2379,not a url", "not a url")]
    [InlineData("ftp://127.0.0.1:2379", "ftp://127.0.0.1:2379")]
    [InlineData("http://127.0.0.1:2379, /relative/path", "/relative/path")]
    [InlineData(" , ", "names no endpoint")]
    public void Malformed_endpoint_lists_are_rejected_naming_the_bad_entry(string value, string named)
    {
        var ex = Should.Throw<ArgumentException>(() => EtcdStoreOptions.ParseEndpoints(value));
        ex.Message.ShouldContain(named);
        ex.Message.ShouldContain(EtcdStoreOptions.EndpointsEnvironmentVariable);
    }

    [Fact]
    public async Task Endpoint_lists_parse_and_the_factory_builds_the_etcd_store()
    {
        var options = new DiscoveryOptions().ApplyEnvironment(name => name switch
        {
            "DYN_STORE_KV" => "etcd",
            "ETCD_ENDPOINTS" => "http://10.0.0.1:2379, https://etcd.example:2379",
            _ => null,
        });
        options.Etcd.Endpoints.Select(u => u.ToString()).ShouldBe(["http://10.0.0.1:2379/", "https://etcd.example:2379/"]);
        await using var store = KeyValueStoreFactory.Create(options);
        store.ShouldBeOfType<EtcdKeyValueStore>().Endpoints.ShouldBe(["http://10.0.0.1:2379", "https://etcd.example:2379"]);
        store.Name.ShouldBe("etcd");
    }

    [Fact]
    public void Invalid_options_are_rejected_naming_the_option()
    {
        Should.Throw<ArgumentException>(() => new EtcdKeyValueStore(new EtcdStoreOptions { Endpoints = [] })).Message.ShouldContain("endpoint");
        Should.Throw<ArgumentOutOfRangeException>(() => new EtcdKeyValueStore(new EtcdStoreOptions { CallTimeout = TimeSpan.Zero })).ParamName.ShouldBe("CallTimeout");
    }
}
