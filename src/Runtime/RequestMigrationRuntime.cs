using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.LoadBalancing;
using RequestMigration.Routing;
using RequestMigration.Serialization;
using RequestMigration.Serving;
using RequestMigration.Transport;

namespace RequestMigration;

/// <summary>
/// The entry point: owns the discovery store, the transports and the serializer, and creates endpoint
/// servers and routers. One per process is typical. Works with or without dependency injection:
/// <code>
/// await using var runtime = new RequestMigrationRuntime(new RuntimeOptions().ApplyEnvironment());
/// var server = runtime.CreateServer().AddEndpoint&lt;string, string&gt;(EndpointId.Parse("demo/backend/generate"), Handler);
/// await server.StartAsync();
/// </code>
/// </summary>
public sealed class RequestMigrationRuntime : IAsyncDisposable, IDisposable
{
    private readonly bool _ownsStore;
    private readonly List<EndpointServer> _servers = [];
    private readonly List<IAsyncDisposable> _routers = [];
    private readonly Lock _gate = new();
    private bool _disposed;

    /// <summary>Validates <paramref name="options"/> and opens the discovery store.</summary>
    /// <param name="options">Settings; validated here.</param>
    /// <param name="loggerFactory">Logging; none by default.</param>
    /// <param name="timeProvider">Clock for leases, reconcile and timeouts; the system clock by default.</param>
    /// <param name="serializer">Payload serializer; JSON by default.</param>
    /// <param name="store">A store to use instead of the one <see cref="RuntimeOptions.Discovery"/> names (not disposed by the runtime).</param>
    /// <param name="meterFactory">
    /// Creates the meter <c>RequestMigration</c> (see <see cref="RuntimeMetrics"/>); the DI extension passes the
    /// container's. Without one, the runtime records on a process-wide meter of that name.
    /// </param>
    public RequestMigrationRuntime(RuntimeOptions options, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null, IPayloadSerializer? serializer = null, IKeyValueStore? store = null, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        Time = timeProvider ?? TimeProvider.System;
        Serializer = serializer ?? JsonPayloadSerializer.Default;
        Metrics = MetricInstruments.Create(meterFactory);
        _ownsStore = store is null;
        Store = store ?? KeyValueStoreFactory.Create(options.Discovery, Time, LoggerFactory);
        Registry = new InstanceRegistry(Store, LoggerFactory.CreateLogger<InstanceRegistry>());
        Transports = new TransportFactory(options, Time, LoggerFactory.CreateLogger<TransportFactory>());
    }

    /// <summary>The validated options.</summary>
    public RuntimeOptions Options { get; }

    /// <summary>The discovery store.</summary>
    public IKeyValueStore Store { get; }

    /// <summary>Instance records in <see cref="Store"/>.</summary>
    internal InstanceRegistry Registry { get; }

    internal ILoggerFactory LoggerFactory { get; }

    internal TimeProvider Time { get; }

    internal IPayloadSerializer Serializer { get; }

    internal MetricInstruments Metrics { get; }

    internal TransportFactory Transports { get; }

    /// <summary>The load-balancing policies routers of this runtime can select by name; register your own here.</summary>
    public LoadBalancingPolicyRegistry LoadBalancingPolicies { get; } = new();

    /// <summary>Creates a server; add endpoints to it, then start it. The runtime stops it when disposed.</summary>
    /// <param name="options">Server options (validated here); defaults plus <c>DYN_INSTANCE_TAGS</c> when omitted.</param>
    /// <exception cref="ArgumentException">An option is invalid (say, malformed tags).</exception>
    public EndpointServer CreateServer(ServerOptions? options = null)
    {
        var server = new EndpointServer(this, options ?? new ServerOptions().ApplyEnvironment());
        lock (_gate)
        {
            _servers.Add(server);
        }

        return server;
    }

    /// <summary>Creates a router for <paramref name="endpoint"/>; it starts watching discovery at once.</summary>
    /// <param name="endpoint">The endpoint to call.</param>
    /// <param name="options">Router options (validated here); defaults plus the <c>DYN_*</c> router variables when omitted.</param>
    /// <exception cref="ArgumentException">An option is invalid or names an unknown load-balancing policy.</exception>
    /// <exception cref="FileNotFoundException">The CA certificate (<c>DYN_TLS_CA_FILE</c>) is missing.</exception>
    public PushRouter<TRequest, TResponse> CreateRouter<TRequest, TResponse>(EndpointId endpoint, RouterOptions? options = null)
    {
        var router = new PushRouter<TRequest, TResponse>(this, endpoint, options ?? new RouterOptions().ApplyEnvironment());
        lock (_gate)
        {
            _routers.Add(router);
        }

        return router;
    }

    /// <summary>
    /// Stops servers (gracefully), routers, connections and the store, blocking until done; for containers
    /// disposed synchronously. Prefer <see cref="DisposeAsync"/>.
    /// </summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>Stops servers (gracefully), routers, connections and the store.</summary>
    public async ValueTask DisposeAsync()
    {
        List<EndpointServer> servers;
        List<IAsyncDisposable> routers;
        lock (_gate)
        {
            // A container and its owner may both dispose it.
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            servers = [.. _servers];
            routers = [.. _routers];
            _servers.Clear();
            _routers.Clear();
        }

        foreach (var s in servers)
        {
            await s.DisposeAsync().ConfigureAwait(false);
        }

        foreach (var r in routers)
        {
            await r.DisposeAsync().ConfigureAwait(false);
        }

        await Transports.DisposeAsync().ConfigureAwait(false);
        if (_ownsStore)
        {
            await Store.DisposeAsync().ConfigureAwait(false);
        }
    }
}
