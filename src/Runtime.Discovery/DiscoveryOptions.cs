using System.Globalization;
using RequestMigration.Discovery.Etcd;
using RequestMigration.Discovery.File;

namespace RequestMigration.Discovery;

/// <summary>Which store to use and how; bound from configuration or read from the environment.</summary>
public sealed class DiscoveryOptions
{
    /// <summary>Environment variable selecting the backend.</summary>
    public const string StoreEnvironmentVariable = "DYN_STORE_KV";

    /// <summary>Environment variable with <see cref="StartupTimeout"/> in seconds.</summary>
    public const string StartupTimeoutEnvironmentVariable = "DYN_STORE_STARTUP_TIMEOUT_SECS";

    /// <summary>Default of <see cref="StartupTimeout"/>: 30 s.</summary>
    public static readonly TimeSpan DefaultStartupTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The backend (<c>DYN_STORE_KV</c>); default <see cref="StoreKind.File"/>.</summary>
    public StoreKind Store { get; set; } = StoreKind.File;

    /// <summary>
    /// TTL of each process's primary lease (<c>DYN_LEASE_TTL_SECS</c>): a process killed without deregistering
    /// disappears from discovery about this long after it died. Default 10 s, as in the seed; at least 1 s (etcd
    /// may round very short TTLs up to its own minimum). The variable also sets the file store's TTL
    /// (<see cref="FileStoreOptions.Ttl"/>); every process sharing a file store must use the same value, since
    /// any of them removes files older than its own TTL.
    /// </summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a starting server keeps trying to register when the store is unavailable (etcd down, unreachable
    /// or without quorum) before it gives up with an error naming the store (<c>DYN_STORE_STARTUP_TIMEOUT_SECS</c>).
    /// It retries with backoff (0.25 s doubling to 4 s) and logs one warning while it waits. Default 30 s; zero
    /// makes a single attempt.
    /// </summary>
    public TimeSpan StartupTimeout { get; set; } = DefaultStartupTimeout;

    /// <summary>Options of the file backend.</summary>
    public FileStoreOptions File { get; set; } = new();

    /// <summary>Options of the etcd backend.</summary>
    public EtcdStoreOptions Etcd { get; set; } = new();

    /// <summary>
    /// Applies <c>DYN_STORE_KV</c>, <c>DYN_FILE_KV</c>, <c>ETCD_ENDPOINTS</c>, <c>DYN_LEASE_TTL_SECS</c> and <c>DYN_STORE_STARTUP_TIMEOUT_SECS</c>
    /// from <paramref name="environment"/> (default: the process environment) over the current values.
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
            EtcdEndpointsFromEnvironment = true;
        }

        if (environment("DYN_LEASE_TTL_SECS") is { Length: > 0 } ttl)
        {
            if (!double.TryParse(ttl, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || !double.IsFinite(seconds) || seconds < 1 || seconds > 3600)
            {
                throw new ArgumentException($"DYN_LEASE_TTL_SECS='{ttl}' is not a number of seconds between 1 and 3600", "DYN_LEASE_TTL_SECS");
            }

            // The file store's own TTL is the same thing there: how long an unrefreshed file lives.
            LeaseTtl = TimeSpan.FromSeconds(seconds);
            File.Ttl = LeaseTtl;
        }

        if (environment(StartupTimeoutEnvironmentVariable) is { Length: > 0 } startup)
        {
            if (!double.TryParse(startup, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || !double.IsFinite(seconds) || seconds < 0 || seconds > 86_400)
            {
                throw new ArgumentException($"{StartupTimeoutEnvironmentVariable}='{startup}' is not a number of seconds between 0 and 86400", StartupTimeoutEnvironmentVariable);
            }

            StartupTimeout = TimeSpan.FromSeconds(seconds);
        }

        return this;
    }

    /// <summary>Whether <c>ETCD_ENDPOINTS</c> was set when the environment was applied (warned about when the store is not etcd).</summary>
    internal bool EtcdEndpointsFromEnvironment { get; private set; }

    /// <summary>Rejects values that cannot work, naming the option.</summary>
    public void Validate()
    {
        if (LeaseTtl < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(LeaseTtl), LeaseTtl, "lease TTL must be at least 1 s");
        }

        if (StartupTimeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(StartupTimeout), StartupTimeout, $"start-up timeout ({StartupTimeoutEnvironmentVariable}) must not be negative");
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
