using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;

namespace RequestMigration.Tools.Cli;

/// <summary>The store flags every command takes; each overrides its environment variable.</summary>
/// <param name="Store"><c>--store</c> (<c>DYN_STORE_KV</c>).</param>
/// <param name="FileDir"><c>--file-dir</c> (<c>DYN_FILE_KV</c>).</param>
/// <param name="EtcdEndpoints"><c>--etcd-endpoints</c> (<c>ETCD_ENDPOINTS</c>).</param>
internal sealed record StoreFlags(string? Store, string? FileDir, string? EtcdEndpoints)
{
    /// <summary>
    /// Applies the flags over <paramref name="options"/> (already holding the environment). A location flag alone
    /// selects its store, so <c>--etcd-endpoints URL</c> is enough to talk to etcd.
    /// </summary>
    /// <exception cref="UsageException">A flag is malformed, or the flags contradict each other.</exception>
    public void ApplyTo(DiscoveryOptions options)
    {
        if (Store is not null)
        {
            options.Store = Parse(() => StoreKinds.Parse(Store, "--store"));
        }
        else if (FileDir is not null && EtcdEndpoints is not null)
        {
            throw new UsageException("--file-dir and --etcd-endpoints name two different stores; pass one (or --store to choose)");
        }
        else if (FileDir is not null)
        {
            options.Store = StoreKind.File;
        }
        else if (EtcdEndpoints is not null)
        {
            options.Store = StoreKind.Etcd;
        }

        if (FileDir is not null)
        {
            options.File.Root = FileDir;
        }

        if (EtcdEndpoints is not null)
        {
            options.Etcd.Endpoints = Parse(() => EtcdStoreOptions.ParseEndpoints(EtcdEndpoints), "--etcd-endpoints");
        }

        if (options.Store == StoreKind.Mem)
        {
            throw new UsageException("the mem store lives inside one process, so rmctl cannot see it; use DYN_STORE_KV=file or etcd (or --store)");
        }
    }

    private static T Parse<T>(Func<T> parse, string? flag = null)
    {
        try
        {
            return parse();
        }
        catch (ArgumentException ex)
        {
            // The runtime's parsers name the environment variable; the value came from a flag here.
            var message = ErrorText.Of(ex).Replace(EtcdStoreOptions.EndpointsEnvironmentVariable + ": ", string.Empty, StringComparison.Ordinal);
            throw new UsageException(flag is null ? message : $"{flag}: {message}");
        }
    }
}

/// <summary>An open discovery store and how to name it in messages.</summary>
internal sealed class StoreConnection : IAsyncDisposable
{
    private bool _keepOwnedKeys;

    private StoreConnection(IKeyValueStore store, DiscoveryOptions options)
    {
        Store = store;
        Options = options;
    }

    /// <summary>The store.</summary>
    public IKeyValueStore Store { get; }

    /// <summary>The settings it was opened with.</summary>
    public DiscoveryOptions Options { get; }

    /// <summary>What and where, for messages: <c>file store at /tmp/x</c>, <c>etcd at http://127.0.0.1:2379</c>.</summary>
    public string Description => Describe(Options);

    /// <summary>Describes a store without opening it. Endpoint URIs lose any user information (it may be a secret).</summary>
    public static string Describe(DiscoveryOptions options) => options.Store switch
    {
        StoreKind.File => $"file store at {options.File.ResolveRoot()}",
        StoreKind.Etcd => $"etcd at {string.Join(", ", options.Etcd.Endpoints.Select(e => $"{e.Scheme}://{e.Authority}"))}",
        _ => $"{options.Store.ToName()} store",
    };

    /// <summary>Reads <c>DYN_STORE_KV</c>, <c>DYN_FILE_KV</c>, <c>ETCD_ENDPOINTS</c>, <c>DYN_LEASE_TTL_SECS</c>, then the flags.</summary>
    /// <exception cref="UsageException">A variable or flag is invalid.</exception>
    public static DiscoveryOptions ResolveOptions(StoreFlags flags)
    {
        DiscoveryOptions options;
        try
        {
            options = new DiscoveryOptions().ApplyEnvironment();
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ErrorText.Of(ex));
        }

        flags.ApplyTo(options);
        return options;
    }

    /// <summary>Opens the store the options name.</summary>
    /// <param name="options">Resolved settings.</param>
    /// <param name="loggerFactory">Where the store logs.</param>
    /// <param name="createIfMissing">
    /// Whether a missing file-store directory may be created. Reads don't: a mistyped <c>DYN_FILE_KV</c> would
    /// otherwise look like an empty fleet.
    /// </param>
    /// <exception cref="UsageException">The settings are invalid.</exception>
    /// <exception cref="CliFailureException">The store cannot be opened; the message names it.</exception>
    public static StoreConnection Open(DiscoveryOptions options, ILoggerFactory loggerFactory, bool createIfMissing = false)
    {
        if (options.Store == StoreKind.File)
        {
            var root = options.File.ResolveRoot();
            if (System.IO.File.Exists(root))
            {
                throw new CliFailureException($"file store at {root}: that is a file, not a directory (check DYN_FILE_KV or --file-dir)");
            }

            if (!createIfMissing && !Directory.Exists(root))
            {
                throw new CliFailureException($"file store at {root}: the directory does not exist, so no server has registered there (point DYN_FILE_KV or --file-dir at the directory your servers use)");
            }
        }

        try
        {
            return new StoreConnection(KeyValueStoreFactory.Create(options, null, loggerFactory), options);
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ErrorText.Of(ex));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliFailureException($"{Describe(options)}: cannot open it: {ex.Message}", ex);
        }
    }

    /// <summary>
    /// Leaves the keys this process wrote in place on exit. The file store deletes every file its owner wrote when
    /// disposed, which would undo <c>rmctl store put</c> the moment it returned; skipping the dispose leaves the
    /// file to live out its TTL like the file of any process that has gone.
    /// </summary>
    public void KeepOwnedKeys() => _keepOwnedKeys = true;

    /// <summary>Closes the store (see <see cref="KeepOwnedKeys"/>).</summary>
    public ValueTask DisposeAsync() =>
        _keepOwnedKeys && Options.Store == StoreKind.File ? ValueTask.CompletedTask : Store.DisposeAsync();
}
