using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;
using RequestMigration.Tests.Discovery;
using Xunit;

namespace RequestMigration.Tests.Etcd;

/// <summary>The etcd backend against a real etcd, with the real clock (leases expire inside etcd).</summary>
[Collection(EtcdCollection.Name)]
public sealed class EtcdStoreConformanceTests(EtcdFixture etcd) : StoreConformanceTests
{
    // etcd raises shorter TTLs to its minimum of about 2 s.
    protected override TimeSpan ShortTtl => TimeSpan.FromSeconds(2);

    // etcd checks for expired leases every 500 ms; keys went away about 0.5 s after the TTL when measured.
    protected override TimeSpan ExpirySlack => TimeSpan.FromSeconds(1.5);

    protected override ValueTask<IKeyValueStore> OpenStoreAsync() =>
        ValueTask.FromResult<IKeyValueStore>(new EtcdKeyValueStore(etcd.Options()));
}
