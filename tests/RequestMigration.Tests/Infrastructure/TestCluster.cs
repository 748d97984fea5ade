using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Transport;
using Xunit;

namespace RequestMigration.Tests.Infrastructure;

/// <summary>
/// Servers and routers on real loopback sockets, each with its own runtime (as separate processes would
/// have), sharing one in-memory discovery store. Everything is stopped on dispose.
/// </summary>
internal sealed class TestCluster : IAsyncDisposable
{
    public const string DefaultEndpoint = "test/backend/generate";

    private readonly List<RequestMigrationRuntime> _runtimes = [];

    public TestCluster(TransportKind transport, bool tcpMultiplexing = true)
    {
        Transport = transport;
        TcpMultiplexing = tcpMultiplexing;
    }

    public TransportKind Transport { get; }

    /// <summary>Whether TCP clients multiplex (rm/2) or use one request per connection (the rm/1 fallback).</summary>
    public bool TcpMultiplexing { get; }

    public MemoryKeyValueStore Store { get; } = new();

    /// <summary>The meter factory every runtime of the cluster records on (null: the process-wide meter).</summary>
    public IMeterFactory? MeterFactory { get; init; }

    public TestLoggerProvider Logs { get; } = new();

    public RuntimeOptions Options(Action<RuntimeOptions>? configure = null)
    {
        var o = new RuntimeOptions
        {
            Transport = Transport,
            Discovery = new DiscoveryOptions { Store = StoreKind.Mem },
            DrainTimeout = TimeSpan.FromSeconds(5),

            // Tests that need routers to catch up with a stopping server set a grace period themselves.
            DeregistrationGracePeriod = TimeSpan.Zero,
            TcpMultiplexing = TcpMultiplexing,
        };
        configure?.Invoke(o);
        return o;
    }

    public RequestMigrationRuntime Runtime(Action<RuntimeOptions>? configure = null, TimeProvider? time = null)
    {
        var rt = new RequestMigrationRuntime(Options(configure), LoggerFactory.Create(b => b.AddProvider(Logs).SetMinimumLevel(LogLevel.Debug)), time, store: Store, meterFactory: MeterFactory);
        _runtimes.Add(rt);
        return rt;
    }

    public async Task<EndpointServer> StartServerAsync<TReq, TResp>(EndpointHandler<TReq, TResp> handler, string endpoint = DefaultEndpoint, Action<RuntimeOptions>? configure = null, ServerOptions? server = null)
    {
        var created = Runtime(configure).CreateServer(server ?? new ServerOptions()).AddEndpoint(EndpointId.Parse(endpoint), handler);
        await created.StartAsync(TestContext.Current.CancellationToken);
        return created;
    }

    /// <summary>A named server (see <see cref="StartNamedServerAsync"/>) with tags.</summary>
    public Task<EndpointServer> StartTaggedServerAsync(string name, string tags, int count = 3, ConcurrentQueue<string>? calls = null) =>
        StartServerAsync<string, string>((req, ctx) => Named(name, count, -1, calls, ctx), server: new ServerOptions { Tags = InstanceTags.Parse(tags, "test tags") });

    /// <summary>A server whose items say who sent them: "{name}:{i}" for i in 0..count-1.</summary>
    public Task<EndpointServer> StartNamedServerAsync(string name, int count = 3, int abortAfter = -1, ConcurrentQueue<string>? calls = null) =>
        StartServerAsync<string, string>((req, ctx) => Named(name, count, abortAfter, calls, ctx));

    public async Task<PushRouter<TReq, TResp>> RouterAsync<TReq, TResp>(int expectedInstances, RouterOptions? options = null, TimeProvider? time = null, string endpoint = DefaultEndpoint, Action<RuntimeOptions>? configure = null)
    {
        var router = Runtime(configure, time).CreateRouter<TReq, TResp>(EndpointId.Parse(endpoint), options ?? new RouterOptions());
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (router.Instances.Available.Count < expectedInstances)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"router saw {router.Instances.Available.Count} of {expectedInstances} instances");
            }

            await Task.Delay(10);
        }

        return router;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var rt in _runtimes)
        {
            await rt.DisposeAsync();
        }

        await Store.DisposeAsync();
        Logs.Dispose();
    }

    private static async IAsyncEnumerable<string> Named(string name, int count, int abortAfter, ConcurrentQueue<string>? calls, RequestContext ctx)
    {
        calls?.Enqueue(name);
        for (var i = (int)ctx.ResumeFrom; i < count; i++)
        {
            if (i == abortAfter)
            {
                throw new AbortStreamException("test cut");
            }

            await Task.Yield();
            yield return $"{name}:{i}";
        }
    }
}

/// <summary>Collects log lines so tests can check what was logged.</summary>
internal sealed class TestLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<(LogLevel Level, string Category, string Message)> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public bool Contains(string text) => Entries.Any(e => e.Message.Contains(text, StringComparison.Ordinal));

    public void Dispose()
    {
    }

    private sealed class Logger(TestLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Entries.Enqueue((logLevel, category, formatter(state, exception)));
    }
}
