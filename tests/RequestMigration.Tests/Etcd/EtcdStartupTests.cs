using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Etcd;

/// <summary>
/// Starting while the store is unavailable (the registrar's start-up retry, on a fake clock) and the start-up
/// settings; no etcd needed.
/// </summary>
public sealed class EtcdStartupTests
{
    [Fact]
    public async Task Start_up_retries_an_unavailable_store_with_backoff_and_warns_once()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var store = new UnavailableStore(new MemoryKeyValueStore(time), failures: 3);
        var logger = new CapturingLogger<InstanceRegistrar>();

        var starting = InstanceRegistrar.StartAsync(new InstanceRegistry(store), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), time, logger);
        (await WaitForAsync(() => store.Attempts == 1)).ShouldBeTrue();

        // Backoff 0.25 s, then 0.5 s, then 1 s.
        time.Advance(TimeSpan.FromMilliseconds(250));
        (await WaitForAsync(() => store.Attempts == 2)).ShouldBeTrue();
        time.Advance(TimeSpan.FromMilliseconds(490));
        (await WaitForAsync(() => store.Attempts == 3, TimeSpan.FromMilliseconds(200))).ShouldBeFalse("retried before the backoff");
        time.Advance(TimeSpan.FromMilliseconds(10));
        (await WaitForAsync(() => store.Attempts == 3)).ShouldBeTrue();
        starting.IsCompleted.ShouldBeFalse();
        time.Advance(TimeSpan.FromSeconds(1));

        await using var registrar = await starting.WaitAsync(TimeSpan.FromSeconds(5));
        store.Attempts.ShouldBe(4);
        var entries = logger.Entries();
        entries.Count(e => e.Level == LogLevel.Warning).ShouldBe(1, string.Join('\n', entries));
        entries.Single(e => e.Level == LogLevel.Warning).Message.ShouldContain("etcd at http://127.0.0.1:1 is unavailable");
        entries.Single(e => e.Level == LogLevel.Warning).Message.ShouldContain("30 s");
        entries.ShouldContain(e => e.Level == LogLevel.Information && e.Message.Contains("available after 1.8 s", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Start_up_gives_up_after_the_start_up_timeout_naming_the_store_and_the_timeout()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var store = new UnavailableStore(new MemoryKeyValueStore(time), failures: int.MaxValue);
        var logger = new CapturingLogger<InstanceRegistrar>();

        var starting = InstanceRegistrar.StartAsync(new InstanceRegistry(store), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(5), time, logger);
        for (var i = 0; i < 40 && !starting.IsCompleted; i++)
        {
            await WaitForAsync(() => false, TimeSpan.FromMilliseconds(10));
            time.Advance(TimeSpan.FromMilliseconds(250));
        }

        var ex = await Should.ThrowAsync<StoreUnavailableException>(starting.WaitAsync(TimeSpan.FromSeconds(5)));
        ex.Message.ShouldContain("etcd at http://127.0.0.1:1 is unavailable");
        ex.Message.ShouldContain("start-up timeout of 5 s");
        ex.Message.ShouldContain(DiscoveryOptions.StartupTimeoutEnvironmentVariable);
        store.Attempts.ShouldBeInRange(4, 8); // 0, 0.25, 0.75, 1.75, 3.75 and the last one at 5 s
        logger.Entries().Count(e => e.Level == LogLevel.Warning).ShouldBe(1);
    }

    [Fact]
    public async Task A_zero_start_up_timeout_makes_one_attempt()
    {
        await using var store = new UnavailableStore(new MemoryKeyValueStore(), failures: int.MaxValue);
        await Should.ThrowAsync<StoreUnavailableException>(
            InstanceRegistrar.StartAsync(new InstanceRegistry(store), TimeSpan.FromSeconds(10), TimeSpan.Zero));
        store.Attempts.ShouldBe(1);
    }

    [Theory]
    [InlineData("12", 12.0)]
    [InlineData("0", 0.0)]
    [InlineData("2.5", 2.5)]
    public void The_start_up_timeout_is_read_from_the_environment(string value, double seconds)
    {
        var options = new DiscoveryOptions().ApplyEnvironment(name => name == DiscoveryOptions.StartupTimeoutEnvironmentVariable ? value : null);
        options.StartupTimeout.ShouldBe(TimeSpan.FromSeconds(seconds));
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("-1")]
    [InlineData("NaN")]
    [InlineData("1e9")]
    public void An_invalid_start_up_timeout_is_rejected_naming_the_variable(string value)
    {
        var ex = Should.Throw<ArgumentException>(() => new DiscoveryOptions().ApplyEnvironment(name => name == DiscoveryOptions.StartupTimeoutEnvironmentVariable ? value : null));
        ex.Message.ShouldContain(DiscoveryOptions.StartupTimeoutEnvironmentVariable);
        ex.Message.ShouldContain(value);
    }

    [Fact]
    public void A_negative_start_up_timeout_is_rejected_naming_the_option()
    {
        Should.Throw<ArgumentOutOfRangeException>(() => new DiscoveryOptions { StartupTimeout = TimeSpan.FromSeconds(-1) }.Validate())
            .ParamName.ShouldBe(nameof(DiscoveryOptions.StartupTimeout));
        new DiscoveryOptions().StartupTimeout.ShouldBe(TimeSpan.FromSeconds(30));
    }

    [Theory]
    [InlineData("mem")]
    [InlineData("file")]
    public async Task Etcd_endpoints_set_for_another_store_are_warned_about_once_without_the_value(string kind)
    {
        var options = new DiscoveryOptions().ApplyEnvironment(name => name switch
        {
            "DYN_STORE_KV" => kind,
            "ETCD_ENDPOINTS" => "http://user:s3cret@10.1.2.3:2379",
            _ => null,
        });
        options.File.Root = Path.Combine(Path.GetTempPath(), "rm-factory-" + Guid.NewGuid().ToString("N"));
        using var loggers = new CapturingLoggerFactory();
        try
        {
            await using var store = KeyValueStoreFactory.Create(options, loggerFactory: loggers);
            var warnings = loggers.Entries().Where(e => e.Level == LogLevel.Warning).Select(e => e.Message).ToList();
            warnings.Count.ShouldBe(1, string.Join('\n', warnings));
            warnings[0].ShouldContain("ETCD_ENDPOINTS");
            warnings[0].ShouldContain($"the {kind} store");
            warnings[0].ShouldContain("DYN_STORE_KV=etcd");
            warnings[0].ShouldNotContain("s3cret");
            warnings[0].ShouldNotContain("10.1.2.3");
        }
        finally
        {
            if (Directory.Exists(options.File.Root))
            {
                Directory.Delete(options.File.Root, recursive: true);
            }
        }
    }

    [Fact]
    public async Task No_warning_when_etcd_endpoints_go_with_the_etcd_store_or_are_unset()
    {
        using var loggers = new CapturingLoggerFactory();
        var etcd = new DiscoveryOptions().ApplyEnvironment(name => name switch
        {
            "DYN_STORE_KV" => "etcd",
            "ETCD_ENDPOINTS" => "http://127.0.0.1:2379",
            _ => null,
        });
        await using (KeyValueStoreFactory.Create(etcd, loggerFactory: loggers))
        {
        }

        var mem = new DiscoveryOptions().ApplyEnvironment(name => name == "DYN_STORE_KV" ? "mem" : null);
        await using (KeyValueStoreFactory.Create(mem, loggerFactory: loggers))
        {
        }

        loggers.Entries().ShouldNotContain(e => e.Level >= LogLevel.Warning);
    }

    private static async Task<bool> WaitForAsync(Func<bool> condition, TimeSpan? timeout = null)
    {
        var end = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(5));
        while (DateTime.UtcNow < end)
        {
            if (condition())
            {
                return true;
            }

            await Task.Delay(5);
        }

        return condition();
    }

    /// <summary>A store whose lease grants fail as an unreachable etcd's do, a given number of times.</summary>
    private sealed class UnavailableStore(IKeyValueStore inner, int failures) : IKeyValueStore
    {
        private int _attempts;

        public int Attempts => Volatile.Read(ref _attempts);

        public string Name => "etcd";

        public bool LeaseIdsAreShared => true;

        public ValueTask<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken = default)
        {
            if (Interlocked.Increment(ref _attempts) <= failures)
            {
                throw new StoreUnavailableException("etcd at http://127.0.0.1:1 is unavailable: grant lease (10 s) failed (connection refused)");
            }

            return inner.GrantLeaseAsync(ttl, cancellationToken);
        }

        public ValueTask<KeyValueEntry?> GetAsync(string key, CancellationToken cancellationToken = default) => inner.GetAsync(key, cancellationToken);

        public ValueTask<IReadOnlyList<KeyValueEntry>> ListAsync(string prefix, CancellationToken cancellationToken = default) => inner.ListAsync(prefix, cancellationToken);

        public ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, long leaseId = 0, CancellationToken cancellationToken = default) => inner.PutAsync(key, value, leaseId, cancellationToken);

        public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken = default) => inner.DeleteAsync(key, cancellationToken);

        public ValueTask<bool> KeepAliveAsync(long leaseId, CancellationToken cancellationToken = default) => inner.KeepAliveAsync(leaseId, cancellationToken);

        public ValueTask RevokeLeaseAsync(long leaseId, CancellationToken cancellationToken = default) => inner.RevokeLeaseAsync(leaseId, cancellationToken);

        public IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, CancellationToken cancellationToken = default) => inner.WatchAsync(prefix, cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
