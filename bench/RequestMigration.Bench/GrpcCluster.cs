using System.Net;
using Grpc.Core;
using Grpc.Net.Client;
using Grpc.Net.Client.Balancer;
using Grpc.Net.Client.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RequestMigration.Bench.Proto;

namespace RequestMigration.Bench;

/// <summary>
/// N in-process Kestrel servers hosting the gRPC twin of the bench endpoint: HTTP/2 over TLS with the same
/// server.pem/server-key.pem, on 127.0.0.1. Clients trust certs/ca.pem only.
/// </summary>
internal sealed class GrpcCluster : IAsyncDisposable
{
    private readonly List<WebApplication> _hosts;

    private GrpcCluster(List<WebApplication> hosts, List<int> ports, List<CallCounter> counters)
    {
        _hosts = hosts;
        Ports = ports;
        Counters = counters;
    }

    public IReadOnlyList<int> Ports { get; }

    /// <summary>Calls served per server, to check that round-robin balancing really spreads the load.</summary>
    public IReadOnlyList<CallCounter> Counters { get; }

    public static async Task<GrpcCluster> StartAsync(int servers)
    {
        var hosts = new List<WebApplication>();
        var ports = new List<int>();
        var counters = new List<CallCounter>();
        try
        {
            for (var i = 0; i < servers; i++)
            {
                var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
                builder.Logging.ClearProviders();
                builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l =>
                {
                    l.Protocols = HttpProtocols.Http2;
                    l.UseHttps(BenchCertificates.Server);
                }));
                var counter = new CallCounter();
                builder.Services.AddSingleton(counter);
                builder.Services.AddGrpc();
                var app = builder.Build();
                app.MapGrpcService<GrpcBenchService>();
                await app.StartAsync();
                hosts.Add(app);
                counters.Add(counter);
                ports.Add(new Uri(app.Urls.First()).Port);
            }
        }
        catch
        {
            foreach (var h in hosts)
            {
                await h.DisposeAsync();
            }

            throw;
        }

        return new GrpcCluster(hosts, ports, counters);
    }

    /// <summary>A channel to one server.</summary>
    public GrpcChannel Channel(int index) => ChannelTo($"https://127.0.0.1:{Ports[index]}");

    public static GrpcChannel ChannelTo(string address) =>
        GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = Handler() });

    /// <summary>
    /// A channel over every server with gRPC's own client-side load balancing: the static resolver lists the
    /// servers and the round_robin policy spreads calls over one HTTP/2 connection per server.
    /// </summary>
    public GrpcChannel RoundRobinChannel()
    {
        var addresses = Ports.Select(p => new BalancerAddress("127.0.0.1", p)).ToArray();
        var services = new ServiceCollection();
        services.AddSingleton<ResolverFactory>(new StaticResolverFactory(_ => addresses));
        return GrpcChannel.ForAddress("static:///bench", new GrpcChannelOptions
        {
            Credentials = ChannelCredentials.SecureSsl,
            ServiceConfig = new ServiceConfig { LoadBalancingConfigs = { new RoundRobinConfig() } },
            ServiceProvider = services.BuildServiceProvider(),
            HttpHandler = Handler(),
        });
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var h in _hosts)
        {
            await h.StopAsync();
            await h.DisposeAsync();
        }
    }

    private static SocketsHttpHandler Handler() => new()
    {
        SslOptions = BenchCertificates.ClientSslOptions(),
        EnableMultipleHttp2Connections = true,
    };
}

internal sealed class CallCounter
{
    private long _calls;

    public long Calls => Interlocked.Read(ref _calls);

    public void Increment() => Interlocked.Increment(ref _calls);
}

/// <summary>The gRPC twin of <see cref="BenchEndpoint.StreamAsync"/>: writes Count items as fast as the stream takes them.</summary>
internal sealed class GrpcBenchService(CallCounter counter) : BenchService.BenchServiceBase
{
    // Messages are immutable once written; sharing one avoids charging gRPC an allocation we don't charge ourselves.
    private static readonly Item s_item = new() { Payload = BenchEndpoint.Payload };

    public override async Task Stream(Proto.StreamRequest request, IServerStreamWriter<Item> responseStream, ServerCallContext context)
    {
        counter.Increment();
        for (var i = 0; i < request.Count; i++)
        {
            await responseStream.WriteAsync(s_item);
        }
    }

    public override async Task Idle(Proto.StreamRequest request, IServerStreamWriter<Item> responseStream, ServerCallContext context)
    {
        try
        {
            await BenchEndpoint.WaitIdleAsync(context.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The client cancelled: the normal end of an idle call.
        }
    }
}
