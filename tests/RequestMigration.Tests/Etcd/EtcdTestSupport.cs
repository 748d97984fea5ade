using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;

namespace RequestMigration.Tests.Etcd;

/// <summary>Small helpers shared by the etcd tests.</summary>
internal static class EtcdTestSupport
{
    public static EndpointId NewEndpoint() => new("t" + Guid.NewGuid().ToString("N")[..12], "backend", "generate");

    public static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    public static string S(ReadOnlyMemory<byte> b) => Encoding.UTF8.GetString(b.Span);

    /// <summary>Polls <paramref name="condition"/> until it holds; false when <paramref name="timeout"/> passes first.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout)
        {
            try
            {
                if (await condition())
                {
                    return true;
                }
            }
            catch (StoreUnavailableException)
            {
                // etcd not back yet.
            }

            await Task.Delay(50);
        }

        return false;
    }
}

/// <summary>Runs a watch in the background and records everything it yields, as a consumer would see it.</summary>
internal sealed class WatchRecorder : IAsyncDisposable
{
    private readonly Lock _gate = new();
    private readonly List<WatchEvent> _events = [];
    private readonly Dictionary<string, string> _view = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _run;

    private WatchRecorder(IKeyValueStore store, string prefix)
    {
        _run = Task.Run(async () =>
        {
            try
            {
                await foreach (var ev in store.WatchAsync(prefix, _stop.Token))
                {
                    lock (_gate)
                    {
                        _events.Add(ev);
                        switch (ev.Kind)
                        {
                            case WatchEventKind.Put:
                                _view[ev.Key] = EtcdTestSupport.S(ev.Value);
                                break;
                            case WatchEventKind.Delete:
                                _view.Remove(ev.Key);
                                break;
                            case WatchEventKind.Synced:
                                Synced = true;
                                break;
                        }
                    }
                }

                Ended = true;
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
            }
            catch (Exception ex)
            {
                Fault = ex;
            }
        });
    }

    public bool Synced { get; private set; }

    /// <summary>Set if the enumeration finished although it was not cancelled.</summary>
    public bool Ended { get; private set; }

    /// <summary>An exception that escaped the watch.</summary>
    public Exception? Fault { get; private set; }

    public static WatchRecorder Start(IKeyValueStore store, string prefix) => new(store, prefix);

    public List<WatchEvent> Events()
    {
        lock (_gate)
        {
            return [.. _events];
        }
    }

    public Dictionary<string, string> View()
    {
        lock (_gate)
        {
            return new Dictionary<string, string>(_view, StringComparer.Ordinal);
        }
    }

    public Task<bool> WaitForAsync(Func<WatchRecorder, bool> condition, TimeSpan timeout) =>
        EtcdTestSupport.EventuallyAsync(() => Task.FromResult(condition(this)), timeout);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _run.WaitAsync(TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }
}

/// <summary>Keeps what was logged, to check what an outage reports and how often.</summary>
internal sealed class CapturingLogger<T> : ILogger<T>
{
    private readonly Lock _gate = new();
    private readonly List<(LogLevel Level, string Message)> _entries = [];

    public List<(LogLevel Level, string Message)> Entries()
    {
        lock (_gate)
        {
            return [.. _entries];
        }
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_gate)
        {
            _entries.Add((logLevel, formatter(state, exception)));
        }
    }
}

/// <summary>
/// A TCP relay in front of etcd that can cut its clients off (resetting their connections and refusing new
/// ones) while etcd keeps running: the partition in which a lease really expires.
/// </summary>
internal sealed class TcpProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _targetPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly List<TcpClient> _open = [];
    private readonly Task _accepting;
    private volatile bool _blocked;

    public TcpProxy(int targetPort)
    {
        _targetPort = targetPort;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptLoopAsync();
    }

    public int Port { get; }

    public Uri Url => new($"http://127.0.0.1:{Port}");

    public void Block()
    {
        _blocked = true;
        CloseAll();
    }

    public void Unblock() => _blocked = false;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        CloseAll();
        await _accepting;
        _stop.Dispose();
    }

    private static void Abort(TcpClient client)
    {
        try
        {
            // Reset rather than close, so the peer notices at once.
            client.Client.LingerState = new LingerOption(true, 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }

        client.Dispose();
    }

    private static async Task PipeAsync(Stream from, Stream to, CancellationToken ct)
    {
        try
        {
            await from.CopyToAsync(to, ct);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or SocketException)
        {
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            if (_blocked)
            {
                Abort(inbound);
                continue;
            }

            _ = RelayAsync(inbound);
        }
    }

    private async Task RelayAsync(TcpClient inbound)
    {
        var outbound = new TcpClient();
        try
        {
            await outbound.ConnectAsync(IPAddress.Loopback, _targetPort, _stop.Token);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            Abort(inbound);
            outbound.Dispose();
            return;
        }

        lock (_gate)
        {
            _open.Add(inbound);
            _open.Add(outbound);
        }

        if (_blocked)
        {
            CloseAll();
            return;
        }

        using var both = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        var up = PipeAsync(inbound.GetStream(), outbound.GetStream(), both.Token);
        var down = PipeAsync(outbound.GetStream(), inbound.GetStream(), both.Token);
        await Task.WhenAny(up, down);
        await both.CancelAsync();
        await Task.WhenAll(up, down);
        lock (_gate)
        {
            _open.Remove(inbound);
            _open.Remove(outbound);
        }

        Abort(inbound);
        Abort(outbound);
    }

    private void CloseAll()
    {
        List<TcpClient> open;
        lock (_gate)
        {
            open = [.. _open];
            _open.Clear();
        }

        foreach (var c in open)
        {
            Abort(c);
        }
    }
}

/// <summary>Accepts TCP connections and never sends a byte: a server that hangs.</summary>
internal sealed class SilentListener : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly List<TcpClient> _held = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public SilentListener()
    {
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    var c = await _listener.AcceptTcpClientAsync(_stop.Token);
                    lock (_held)
                    {
                        _held.Add(c);
                    }
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        });
    }

    public int Port { get; }

    public Uri Url => new($"http://127.0.0.1:{Port}");

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        lock (_held)
        {
            foreach (var c in _held)
            {
                c.Dispose();
            }
        }

        _stop.Dispose();
    }
}
