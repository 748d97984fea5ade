using System.Net;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Transport;

namespace RequestMigration.Tests.BadInput;

/// <summary>What the echo endpoint streams: "{Text}-{i}" for i in 0..Count-1, <see cref="DelayMs"/> apart.</summary>
public sealed record EchoRequest(string Text, int Count = 3, int DelayMs = 0);

/// <summary>
/// One runtime on the in-memory store serving <see cref="Path"/> over TCP + TLS on 127.0.0.1, plus a router
/// to it, with every log line captured.
/// </summary>
internal sealed class EchoServer : IAsyncDisposable
{
    public const string Path = "test/echo/stream";

    private readonly ILoggerFactory _loggerFactory;

    private EchoServer(RequestMigrationRuntime runtime, EndpointServer server, CapturedLogs logs, ILoggerFactory loggerFactory)
    {
        Runtime = runtime;
        Server = server;
        Logs = logs;
        _loggerFactory = loggerFactory;
        var (host, port) = RequestMigration.Transport.Addresses.Split(server.Address);
        EndPoint = new IPEndPoint(IPAddress.Parse(host), port);
        Router = runtime.CreateRouter<EchoRequest, string>(EndpointId.Parse(Path), new RouterOptions { MaxAttempts = 1 });
    }

    public RequestMigrationRuntime Runtime { get; }

    public EndpointServer Server { get; }

    public CapturedLogs Logs { get; }

    public IPEndPoint EndPoint { get; }

    public PushRouter<EchoRequest, string> Router { get; }

    /// <summary>Starts a server; <paramref name="configure"/> adjusts the options, <paramref name="endpoints"/> adds endpoints next to <see cref="Path"/>.</summary>
    public static async Task<EchoServer> StartAsync(int maxFrameSize = 16 * 1024 * 1024, Action<RuntimeOptions>? configure = null, Action<EndpointServer>? endpoints = null)
    {
        var logs = new CapturedLogs();
        var loggerFactory = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Trace));
        var certs = RawConnection.CertsDir;
        var options = new RuntimeOptions
        {
            Discovery = new DiscoveryOptions { Store = StoreKind.Mem },
            Transport = TransportKind.Tcp,
            ListenHost = "127.0.0.1",
            MaxFrameSize = maxFrameSize,
            DrainTimeout = TimeSpan.FromSeconds(2),
            DeregistrationGracePeriod = TimeSpan.Zero,
        };
        options.Tls.CaCertificateFile = System.IO.Path.Combine(certs, "ca.pem");
        options.Tls.CertificateFile = System.IO.Path.Combine(certs, "server.pem");
        options.Tls.PrivateKeyFile = System.IO.Path.Combine(certs, "server-key.pem");
        configure?.Invoke(options);
        var runtime = new RequestMigrationRuntime(options, loggerFactory);
        try
        {
            var server = runtime.CreateServer().AddEndpoint<EchoRequest, string>(EndpointId.Parse(Path), EchoAsync);
            endpoints?.Invoke(server);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await server.StartAsync(cts.Token);
            return new EchoServer(runtime, server, logs, loggerFactory);
        }
        catch
        {
            await runtime.DisposeAsync();
            loggerFactory.Dispose();
            throw;
        }
    }

    public static IEnumerable<string> Expected(EchoRequest request) => Enumerable.Range(0, request.Count).Select(i => $"{request.Text}-{i}");

    /// <summary>Sends a request through the router (a real client) and collects the data items.</summary>
    public async Task<List<string>> CallAsync(EchoRequest request)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await Router.WaitForInstancesAsync(TimeSpan.FromSeconds(5), cts.Token);
        var items = new List<string>();
        await foreach (var item in Router.GenerateAsync(request, cts.Token))
        {
            if (item.IsError)
            {
                throw new InvalidOperationException($"router reported an error item: {item.Comment}");
            }

            items.Add(item.Data!);
        }

        return items;
    }

    public async ValueTask DisposeAsync()
    {
        await Runtime.DisposeAsync();
        _loggerFactory.Dispose();
    }

    private static async IAsyncEnumerable<string> EchoAsync(EchoRequest request, RequestContext context)
    {
        for (var i = 0; i < request.Count; i++)
        {
            if (request.DelayMs > 0)
            {
                await Task.Delay(request.DelayMs, context.CancellationToken);
            }

            yield return $"{request.Text}-{i}";
        }
    }
}
