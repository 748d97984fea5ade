using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Discovery;
using RequestMigration.Discovery.File;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.Tests.Infrastructure;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Infrastructure.InstanceRecords;

namespace RequestMigration.Tests.Discovery;

/// <summary>Corrupt entries, crashed owners and lost leases.</summary>
public sealed class DiscoveryRobustnessTests : IDisposable
{
    private static readonly EndpointId Endpoint = EndpointId.Parse("ns/backend/generate");
    private readonly string _root = Path.Combine(Path.GetTempPath(), "rm-robust-" + Guid.NewGuid().ToString("N"));
    private readonly TestLoggerProvider _logs = new();
    private readonly ILoggerFactory _loggerFactory;

    public DiscoveryRobustnessTests() => _loggerFactory = LoggerFactory.Create(b => b.AddProvider(_logs));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        _loggerFactory.Dispose();
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, true);
        }
    }

    [Fact]
    public async Task Corrupt_instance_file_is_skipped_with_a_warning_naming_the_key_and_valid_ones_still_route()
    {
        await using var store = new FileKeyValueStore(new FileStoreOptions { Root = _root });
        var registry = new InstanceRegistry(store, _loggerFactory.CreateLogger<InstanceRegistry>());
        await registry.PutAsync(Record(Endpoint, 0x1), 0, Ct);

        // A half-written or foreign file where a record should be.
        var corruptKey = InstanceKeys.Key(Endpoint, 0x2);
        await System.IO.File.WriteAllTextAsync(FileKeyPaths.ToPath(_root, corruptKey), "{\"instance_id\": 2, \"addr", Ct);
        await store.PutAsync(InstanceKeys.Prefix(Endpoint) + "not-hex", Encoding.UTF8.GetBytes("{}"), cancellationToken: Ct);
        await store.PutAsync(InstanceKeys.Key(Endpoint, 0x3), Encoding.UTF8.GetBytes("{\"instance_id\":4,\"namespace\":\"ns\",\"component\":\"backend\",\"endpoint\":\"generate\",\"transport\":\"tcp\",\"address\":\"x:1\"}"), cancellationToken: Ct);

        var list = await registry.ListAsync(Endpoint, Ct);
        list.Select(r => r.InstanceId).ShouldBe([0x1UL]);
        _logs.Contains($"ignoring instance key '{corruptKey}' (stored in {FileKeyPaths.ToPath(_root, corruptKey)})").ShouldBeTrue("the warning names the file");
        _logs.Contains("'v1/instances/ns/backend/generate/not-hex'").ShouldBeTrue();
        _logs.Contains("does not match the key").ShouldBeTrue();

        var changes = new List<InstanceChange>();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        await foreach (var c in registry.WatchAsync(Endpoint, cts.Token))
        {
            changes.Add(c);
            if (c.Kind == InstanceChangeKind.Synced)
            {
                break;
            }
        }

        changes.Where(c => c.Kind == InstanceChangeKind.Upserted).Select(c => c.InstanceId).ShouldBe([0x1UL]);
    }

    [Fact]
    public async Task Files_left_by_a_crashed_process_expire_and_are_removed_by_any_process()
    {
        var options = new FileStoreOptions { Root = _root, Ttl = TimeSpan.FromSeconds(2) };
        await using var survivor = new FileKeyValueStore(options);

        // A "crashed" owner: its file exists, nobody refreshes it.
        var path = FileKeyPaths.ToPath(_root, InstanceKeys.Key(Endpoint, 0x9));
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await System.IO.File.WriteAllTextAsync(path, "{}", Ct);
        System.IO.File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddSeconds(-3));

        (await survivor.GetAsync(InstanceKeys.Key(Endpoint, 0x9), Ct)).ShouldBeNull();
        System.IO.File.Exists(path).ShouldBeFalse("the reader removes expired files");
    }

    [Fact]
    public async Task Temp_files_of_an_interrupted_write_are_ignored()
    {
        await using var store = new FileKeyValueStore(new FileStoreOptions { Root = _root });
        await store.PutAsync("v1/instances/a", "1"u8.ToArray(), cancellationToken: Ct);
        await System.IO.File.WriteAllTextAsync(Path.Combine(_root, "v1", "instances", FileKeyPaths.TempPrefix + "abc"), "partial", Ct);
        (await store.ListAsync("v1/instances/", Ct)).Select(e => e.Key).ShouldBe(["v1/instances/a"]);
    }

    [Fact]
    public async Task Graceful_dispose_deletes_own_files_only()
    {
        await using var other = new FileKeyValueStore(new FileStoreOptions { Root = _root });
        await other.PutAsync("v1/instances/theirs", "1"u8.ToArray(), cancellationToken: Ct);
        var mine = new FileKeyValueStore(new FileStoreOptions { Root = _root });
        await mine.PutAsync("v1/instances/mine", "1"u8.ToArray(), cancellationToken: Ct);
        await mine.DisposeAsync();
        (await other.ListAsync("v1/instances/", Ct)).Select(e => e.Key).ShouldBe(["v1/instances/theirs"]);
    }

    [Fact]
    public async Task Registrar_grants_a_new_lease_and_re_registers_when_its_lease_is_lost()
    {
        var time = new FakeTimeProvider();
        await using var store = new MemoryKeyValueStore(time);
        var registry = new InstanceRegistry(store);
        await using var registrar = await InstanceRegistrar.StartAsync(registry, TimeSpan.FromSeconds(3), time, _loggerFactory.CreateLogger<InstanceRegistrar>(), Ct);
        var record = Record(Endpoint, registrar.InstanceId);
        await registrar.RegisterAsync(record, Ct);
        var firstLease = registrar.LeaseId;

        // Simulate an outage longer than the TTL: the store drops the lease and the record with it.
        await store.RevokeLeaseAsync(firstLease, Ct);
        (await registry.ListAsync(Endpoint, Ct)).ShouldBeEmpty();

        for (var i = 0; i < 20 && registrar.LeaseId == firstLease; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(20, Ct);
        }

        registrar.LeaseId.ShouldNotBe(firstLease);
        (await registry.ListAsync(Endpoint, Ct)).ShouldHaveSingleItem().InstanceId.ShouldBe(registrar.InstanceId);
        _logs.Contains("re-registered 1 instance record(s)").ShouldBeTrue();

        // Kept alive from then on: time passing does not expire it.
        for (var i = 0; i < 10; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(10, Ct);
        }

        (await registry.ListAsync(Endpoint, Ct)).ShouldHaveSingleItem();
    }

    [Fact]
    public async Task Registrar_stamps_the_first_registration_time_and_keeps_it_across_re_registrations()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero));
        await using var store = new MemoryKeyValueStore(time);
        var registry = new InstanceRegistry(store);
        await using var registrar = await InstanceRegistrar.StartAsync(registry, TimeSpan.FromSeconds(3), time, _loggerFactory.CreateLogger<InstanceRegistrar>(), Ct);
        var registered = time.GetUtcNow();
        await registrar.RegisterAsync(Record(Endpoint, registrar.InstanceId), Ct);
        (await registry.ListAsync(Endpoint, Ct)).ShouldHaveSingleItem().RegisteredAt.ShouldBe(registered);

        // New tags a minute later: the same instance, so the same registration time.
        time.Advance(TimeSpan.FromMinutes(1));
        await registrar.RegisterAsync(Record(Endpoint, registrar.InstanceId) with { Tags = InstanceTags.Parse("role=worker", "tags") }, Ct);
        var updated = (await registry.ListAsync(Endpoint, Ct)).ShouldHaveSingleItem();
        updated.Tags["role"].ShouldBe("worker");
        updated.RegisteredAt.ShouldBe(registered);

        // A lost lease re-registers the stored record, stamp included.
        await store.RevokeLeaseAsync(registrar.LeaseId, Ct);
        for (var i = 0; i < 20 && (await registry.ListAsync(Endpoint, Ct)).Count == 0; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(20, Ct);
        }

        (await registry.ListAsync(Endpoint, Ct)).ShouldHaveSingleItem().RegisteredAt.ShouldBe(registered);

        // Records of older servers have no stamp and still load.
        await store.PutAsync(InstanceKeys.Key(Endpoint, 0x42), """{"instance_id":66,"namespace":"ns","component":"backend","endpoint":"generate","transport":"tcp","address":"127.0.0.1:9"}"""u8.ToArray(), cancellationToken: Ct);
        (await registry.ListAsync(Endpoint, Ct)).Single(r => r.InstanceId == 0x42).RegisteredAt.ShouldBeNull();
    }
}
