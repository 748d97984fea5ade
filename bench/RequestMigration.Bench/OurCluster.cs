using RequestMigration.Discovery.Memory;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Transport;

namespace RequestMigration.Bench;

/// <summary>
/// One runtime hosting N endpoint servers of the bench endpoint plus the routers that call them, all in this
/// process, discovering each other through the in-memory store (so discovery never shows up in the figures).
/// </summary>
internal sealed class OurCluster : IAsyncDisposable
{
    private readonly MemoryKeyValueStore _store;

    private OurCluster(MemoryKeyValueStore store, RequestMigrationRuntime runtime, IReadOnlyList<EndpointServer> servers)
    {
        _store = store;
        Runtime = runtime;
        Servers = servers;
    }

    public RequestMigrationRuntime Runtime { get; }

    public IReadOnlyList<EndpointServer> Servers { get; }

    public static RuntimeOptions Options(TransportKind transport) => new()
    {
        Transport = transport,
        ListenHost = "127.0.0.1",
        Discovery = { Store = RequestMigration.Discovery.StoreKind.Mem },

        // Relative paths resolve against the binary's directory, where the csproj copies certs/.
        Tls = { CaCertificateFile = "certs/ca.pem", CertificateFile = "certs/server.pem", PrivateKeyFile = "certs/server-key.pem" },

        // Stopping a server with streams still open (the idle-stream figure) should not wait 10 s.
        DrainTimeout = TimeSpan.FromSeconds(1),

        // The idle-stream figure opens up to 10,000 streams from one client over one QUIC connection; gRPC's
        // side is not limited per connection either (its client opens more connections instead).
        Limits = { MaxConcurrentStreamsPerConnection = 60_000, MaxConcurrentStreams = null, MaxConcurrentConnections = null },
    };

    public static async Task<OurCluster> StartAsync(TransportKind transport, int servers)
    {
        var store = new MemoryKeyValueStore();
        var runtime = new RequestMigrationRuntime(Options(transport), store: store);
        var list = new List<EndpointServer>();
        try
        {
            for (var i = 0; i < servers; i++)
            {
                var server = runtime.CreateServer()
                    .AddEndpoint<StreamRequest, string>(BenchEndpoint.Stream, BenchEndpoint.StreamAsync)
                    .AddEndpoint<StreamRequest, string>(BenchEndpoint.Idle, BenchEndpoint.IdleAsync);
                await server.StartAsync();
                list.Add(server);
            }
        }
        catch
        {
            await runtime.DisposeAsync();
            await store.DisposeAsync();
            throw;
        }

        return new OurCluster(store, runtime, list);
    }

    /// <summary>A router that already sees every server of the cluster.</summary>
    public async Task<PushRouter<StreamRequest, string>> CreateRouterAsync(RouterOptions? options = null)
    {
        var router = Runtime.CreateRouter<StreamRequest, string>(BenchEndpoint.Stream, options ?? new RouterOptions());
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (router.Instances.Available.Count < Servers.Count)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"router saw {router.Instances.Available.Count} of {Servers.Count} servers");
            }

            await Task.Delay(5);
        }

        return router;
    }

    public async ValueTask DisposeAsync()
    {
        await Runtime.DisposeAsync();
        await _store.DisposeAsync();
    }
}
