using RequestMigration.Discovery.Etcd;
using RequestMigration.Discovery.File;

namespace RequestMigration.Discovery;

/// <summary>Which store to use and how; bound from configuration or read from the environment.</summary>
public sealed class DiscoveryOptions
{
    /// <summary>Environment variable selecting the backend.</summary>
    public const string StoreEnvironmentVariable = "DYN_STORE_KV";

    /// <summary>The backend (<c>DYN_STORE_KV</c>); default <see cref="StoreKind.File"/>.</summary>
    public StoreKind Store { get; set; } = StoreKind.File;

    /// <summary>TTL of each process's primary lease; a dead process disappears about this long after it died. Default 10 s.</summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Options of the file backend.</summary>
    public FileStoreOptions File { get; set; } = new();

    /// <summary>Options of the etcd backend.</summary>
    public EtcdStoreOptions Etcd { get; set; } = new();

    /// <summary>
    /// Applies <c>DYN_STORE_KV</c>, <c>DYN_FILE_KV</c> and <c>ETCD_ENDPOINTS</c> from <paramref name="environment"/>
    /// (default: the process environment) over the current values.
    /// </summary>
    /// <exception cref="ArgumentException">A variable holds an invalid value; the message names it and lists valid values.</exception>
    public DiscoveryOptions ApplyEnvironment(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        if (environment(StoreEnvironmentVariable) is { } store)
        {
            Store = StoreKinds.Parse(store);
        }

        if (environment(FileStoreOptions.RootEnvironmentVariable) is { Length: > 0 } root)
        {
            File.Root = root;
        }

        if (environment(EtcdStoreOptions.EndpointsEnvironmentVariable) is { } endpoints)
        {
            Etcd.Endpoints = EtcdStoreOptions.ParseEndpoints(endpoints);
        }

        return this;
    }

    /// <summary>Rejects values that cannot work, naming the option.</summary>
    public void Validate()
    {
        if (LeaseTtl < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(LeaseTtl), LeaseTtl, "lease TTL must be at least 1 s");
        }

        if (Store == StoreKind.File)
        {
            File.Validate();
        }

        if (Store == StoreKind.Etcd)
        {
            Etcd.Validate();
        }
    }
}
