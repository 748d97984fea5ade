using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RequestMigration.Discovery.Etcd;
using RequestMigration.Discovery.File;
using RequestMigration.Discovery.Memory;

namespace RequestMigration.Discovery;

/// <summary>Creates the store that <see cref="DiscoveryOptions.Store"/> names.</summary>
public static partial class KeyValueStoreFactory
{
    /// <summary>
    /// Validates the options and opens the store. Warns (once, here) when <c>ETCD_ENDPOINTS</c> was set but the
    /// store is not etcd, since the setting is then ignored.
    /// </summary>
    /// <param name="options">Which store, and its settings.</param>
    /// <param name="timeProvider">Clock for leases, retries and backoff (default: the system clock).</param>
    /// <param name="loggerFactory">Creates the store's logger.</param>
    public static IKeyValueStore Create(DiscoveryOptions options, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        if (options.EtcdEndpointsFromEnvironment && options.Store != StoreKind.Etcd)
        {
            // The value is not logged: endpoint URIs may carry credentials.
            LogEtcdEndpointsIgnored(loggerFactory.CreateLogger(typeof(KeyValueStoreFactory)), options.Store.ToName());
        }

        return options.Store switch
        {
            StoreKind.Mem => new MemoryKeyValueStore(timeProvider),
            StoreKind.File => new FileKeyValueStore(options.File, timeProvider, loggerFactory.CreateLogger<FileKeyValueStore>()),
            StoreKind.Etcd => new EtcdKeyValueStore(options.Etcd, timeProvider, loggerFactory.CreateLogger<EtcdKeyValueStore>()),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Store, $"unknown store; valid values: {StoreKinds.ValidValues}"),
        };
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "discovery: ETCD_ENDPOINTS is set but DYN_STORE_KV selects the {Store} store, so etcd is not used; set DYN_STORE_KV=etcd to use it, or unset ETCD_ENDPOINTS")]
    private static partial void LogEtcdEndpointsIgnored(ILogger logger, string store);
}
