using System.Text;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Infrastructure.InstanceRecords;

namespace RequestMigration.Tests.Discovery;

/// <summary>The public way to publish and read instance records without a server (static instances, tools).</summary>
public sealed class InstanceStoreExtensionsTests
{
    private static readonly EndpointId Endpoint = EndpointId.Parse("ns/backend/generate");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Records_are_written_where_servers_write_them_and_read_back_as_routers_read_them()
    {
        await using var store = new MemoryKeyValueStore();
        await store.PutInstanceAsync(Record(Endpoint, 0x20), cancellationToken: Ct);
        await store.PutInstanceAsync(Record(Endpoint, 0x3), cancellationToken: Ct);
        await store.PutAsync(InstanceKeys.Key(Endpoint, 0x4), Encoding.UTF8.GetBytes("not json"), cancellationToken: Ct);
        await store.PutInstanceAsync(Record(EndpointId.Parse("ns/backend/other"), 0x5), cancellationToken: Ct);

        (await store.GetAsync(InstanceKeys.Key(Endpoint, 0x20), Ct)).ShouldNotBeNull();
        (await store.ListInstancesAsync(Endpoint, Ct)).Select(r => r.InstanceId).ShouldBe([0x3UL, 0x20UL], "ordered by id, the invalid entry and the other endpoint left out");

        (await store.DeleteInstanceAsync(Endpoint, 0x3, Ct)).ShouldBeTrue();
        (await store.DeleteInstanceAsync(Endpoint, 0x3, Ct)).ShouldBeFalse();
        (await store.ListInstancesAsync(Endpoint, Ct)).Select(r => r.InstanceId).ShouldBe([0x20UL]);
    }

    [Fact]
    public async Task A_record_put_with_a_lease_goes_with_the_lease()
    {
        await using var store = new MemoryKeyValueStore();
        var lease = await store.GrantLeaseAsync(TimeSpan.FromSeconds(30), Ct);
        await store.PutInstanceAsync(Record(Endpoint, 0x7), lease, Ct);
        (await store.ListInstancesAsync(Endpoint, Ct)).Count.ShouldBe(1);

        await store.RevokeLeaseAsync(lease, Ct);
        (await store.ListInstancesAsync(Endpoint, Ct)).ShouldBeEmpty();
    }
}
