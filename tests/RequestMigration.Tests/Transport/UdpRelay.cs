using System.Net;
using System.Net.Sockets;

namespace RequestMigration.Tests.Transport;

/// <summary>
/// A UDP relay on loopback between one client and one server, for QUIC fault tests: it forwards datagrams
/// both ways and, while <see cref="Paused"/>, drops them all (a network blip).
/// </summary>
internal sealed class UdpRelay : IAsyncDisposable
{
    private readonly Socket _front = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private readonly Socket _back = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private readonly IPEndPoint _server;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _forward;
    private readonly Task _backward;
    private EndPoint? _client;

    public UdpRelay(int serverPort)
    {
        _server = new IPEndPoint(IPAddress.Loopback, serverPort);
        _front.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _back.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Port = ((IPEndPoint)_front.LocalEndPoint!).Port;
        _forward = Task.Run(ForwardAsync);
        _backward = Task.Run(BackwardAsync);
    }

    public int Port { get; }

    public volatile bool Paused;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _front.Dispose();
        _back.Dispose();
        try
        {
            await Task.WhenAll(_forward, _backward);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }

        _stop.Dispose();
    }

    private async Task ForwardAsync()
    {
        var buffer = new byte[65536];
        while (!_stop.IsCancellationRequested)
        {
            var r = await _front.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), _stop.Token);
            _client = r.RemoteEndPoint;
            if (!Paused)
            {
                await _back.SendToAsync(buffer.AsMemory(0, r.ReceivedBytes), SocketFlags.None, _server, _stop.Token);
            }
        }
    }

    private async Task BackwardAsync()
    {
        var buffer = new byte[65536];
        while (!_stop.IsCancellationRequested)
        {
            var r = await _back.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), _stop.Token);
            if (!Paused && _client is { } client)
            {
                await _front.SendToAsync(buffer.AsMemory(0, r.ReceivedBytes), SocketFlags.None, client, _stop.Token);
            }
        }
    }
}
