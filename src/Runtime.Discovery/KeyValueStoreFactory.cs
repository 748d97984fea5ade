using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RequestMigration.Discovery.Etcd;
using RequestMigration.Discovery.File;
using RequestMigration.Discovery.Memory;

namespace RequestMigration.Discovery;

/// <summary>Creates the store that <see cref="DiscoveryOptions.Store"/> names.</summary>
public static class KeyValueStoreFactory
{
    /// <summary>Validates the options and opens the store.</summary>
    public static IKeyValueStore Create(DiscoveryOptions options, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        return options.Store switch
        {
            StoreKind.Mem => new MemoryKeyValueStore(timeProvider),
            StoreKind.File => new FileKeyValueStore(options.File, timeProvider, loggerFactory.CreateLogger<FileKeyValueStore>()),
            StoreKind.Etcd => new EtcdKeyValueStore(options.Etcd, timeProvider, loggerFactory.CreateLogger<EtcdKeyValueStore>()),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Store, $"unknown store; valid values: {StoreKinds.ValidValues}"),
        };
    }
}
