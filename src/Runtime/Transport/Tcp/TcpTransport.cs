using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using RequestMigration.Serving;
using RequestMigration.Transport.Mux;
using RequestMigration.Transport.Tls;
using RequestMigration.Wire;

namespace RequestMigration.Transport.Tcp;

/// <summary>
/// TCP + TLS listener. Handshakes run off the accept loop so a slow or hostile peer (say, one that sends
/// garbage instead of a ClientHello) delays nobody; failed handshakes are logged and dropped, and one that
/// takes longer than <see cref="ServerLimits.HandshakeTimeout"/> is dropped as a limit. A connection over
/// <see cref="ServerLimits.MaxConcurrentConnections"/> is closed at accept, before any TLS work: its client
/// fails to connect and tries another instance.
/// </summary>
internal sealed partial class TcpTransportListener : ITransportListener
{
    private readonly Socket _socket;
    private readonly TlsConfiguration _tls;
    private readonly ListenerSettings _settings;
    private readonly ILogger _logger;
    private readonly Channel<IServerConnection> _ready = Channel.CreateUnbounded<IServerConnection>();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private long _nextId;

    public TcpTransportListener(IPEndPoint endpoint, TlsConfiguration tls, ListenerSettings settings, ILogger logger)
    {
        _tls = tls;
        _settings = settings;
        _logger = logger;
        _socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _socket.Bind(endpoint);
        _socket.Listen(settings.Limits.ListenBacklog);
        LocalEndPoint = (IPEndPoint)_socket.LocalEndPoint!;
        _acceptLoop = AcceptLoopAsync();
    }

    public IPEndPoint LocalEndPoint { get; }

    /// <summary>The listening socket, for tests that make the listener fail.</summary>
    internal Socket Socket => _socket;

    public ValueTask<IServerConnection> AcceptAsync(CancellationToken cancellationToken) => _ready.Reader.ReadAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _socket.Dispose();
        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }

        _ready.Writer.TryComplete();
        while (_ready.Reader.TryRead(out var c))
        {
            await c.DisposeAsync().ConfigureAwait(false);
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _socket.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is ObjectDisposedException or SocketException { SocketErrorCode: SocketError.OperationAborted or SocketError.NotSocket or SocketError.Shutdown or SocketError.InvalidArgument })
            {
                // The listening socket itself is gone (closed under us, or the stack shut it down): no
                // later accept can succeed. Fail the channel so the server learns why, instead of waiting forever.
                _ready.Writer.TryComplete(new IOException($"the listening socket on {LocalEndPoint} failed: {ex.Message}", ex));
                break;
            }
            catch (SocketException ex)
            {
                // Transient (a peer reset before accept completed, or out of file descriptors): keep
                // accepting, but pause so a persistent error doesn't spin and flood the log.
                LogAcceptFailed(ex.Message);
                try
                {
                    await Task.Delay(100, _stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                continue;
            }

            if (_settings.Gate.TryEnter() is not { } ticket)
            {
                _settings.OnLimit(nameof(ServerLimits.MaxConcurrentConnections), client.RemoteEndPoint, _settings.Gate.RefusalMessage);
                client.Dispose();
                continue;
            }

            _ = HandshakeAsync(client, ticket);
        }
    }

    private async Task HandshakeAsync(Socket socket, ConnectionGate.Ticket ticket)
    {
        var id = $"tcp-{Interlocked.Increment(ref _nextId)}";
        var remote = socket.RemoteEndPoint;
        TcpSockets.Configure(socket);
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        var limit = _settings.Limits.HandshakeTimeout;
        using var timeout = new CancellationTokenSource(limit, _settings.Time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token, timeout.Token);
        try
        {
            await ssl.AuthenticateAsServerAsync(_tls.ServerOptions([TlsConfiguration.MuxAlpn, TlsConfiguration.Alpn]), linked.Token).ConfigureAwait(false);
            IServerConnection connection;
            if (ssl.NegotiatedApplicationProtocol == TlsConfiguration.MuxAlpn)
            {
                // Many streams over this connection, each served as a QUIC stream would be.
                var mux = await MuxConnection.StartAsync(ssl, isClient: false, MuxSettings.Default(_settings.Limits.MaxConcurrentStreamsPerConnection), id, _logger, linked.Token, _settings.Time).ConfigureAwait(false);
                connection = new MuxServerConnection(id, remote?.ToString() ?? "?", mux, ticket);
            }
            else
            {
                connection = new TcpServerConnection(id, remote?.ToString() ?? "?", socket, ssl, ticket);
            }

            if (_ready.Writer.TryWrite(connection))
            {
                return;
            }

            await connection.DisposeAsync().ConfigureAwait(false);
            return;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !_stop.IsCancellationRequested)
        {
            _settings.OnLimit(nameof(ServerLimits.HandshakeTimeout), remote, $"no TLS handshake within {limit.TotalSeconds:0.###} s (HandshakeTimeout, DYN_HANDSHAKE_TIMEOUT_SECS); connection {id} dropped");
        }
        catch (Exception ex)
        {
            LogHandshakeFailed(id, remote?.ToString() ?? "?", Diagnostics.LogValues.Sanitize(ex.Message));
        }

        await ssl.DisposeAsync().ConfigureAwait(false);
        ticket.Release();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "tcp: TLS handshake with {Remote} failed ({Reason}); connection {ConnectionId} dropped")]
    private partial void LogHandshakeFailed(string connectionId, string remote, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "tcp: accept failed ({Reason})")]
    private partial void LogAcceptFailed(string reason);
}

/// <summary>One TCP connection: a single stream that carries requests one after another.</summary>
internal sealed class TcpServerConnection(string id, string remote, Socket socket, SslStream stream, ConnectionGate.Ticket ticket) : IServerConnection
{
    private int _handedOut;

    public string Id => id;

    public string Remote => remote;

    public bool IsMultiplexed => false;

    public ValueTask<Stream?> AcceptStreamAsync(CancellationToken cancellationToken) =>
        ValueTask.FromResult<Stream?>(Interlocked.Exchange(ref _handedOut, 1) == 0 ? stream : null);

    // TCP's close is already a FIN after everything written: a cut and a reset look the same here.
    public void Cut(Stream s) => Abort(s);

    public void Abort(Stream s)
    {
        // Close without an end frame. A FIN rather than an RST: an RST may make the peer's kernel drop
        // bytes it already received, and the consumer must get every item that was sent.
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }

        socket.Dispose();
    }

    public void Complete(Stream s)
    {
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await stream.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            ticket.Release();
        }
    }
}

/// <summary>
/// Client side of TCP + TLS: idle connections are pooled per address and reused, one request at a time
/// per connection. A connection is returned to the pool only after a response ended with its end or
/// error frame; any other ending closes it, which the server sees as cancellation.
/// </summary>
/// <remarks>
/// Every <see cref="ConnectionSweep.Interval"/> the pools are swept: connections idle for longer than the idle timeout
/// are closed, and so are connections the server closed (restart, idle timeout), which would otherwise sit
/// in CLOSE_WAIT until a request stumbled on them; pools left empty for an idle timeout are dropped.
/// <see cref="Forget"/> drops an address's pool at once.
/// </remarks>
internal sealed class TcpClientConnector : IClientConnector
{
    private const int MaxIdlePerAddress = 256;
    private readonly ConcurrentDictionary<string, IdlePool> _idle = new(StringComparer.Ordinal);
    private readonly TlsConfiguration _tls;
    private readonly int _maxFrameSize;
    private readonly TimeSpan _connectTimeout;
    private readonly TimeSpan _idleTimeout;
    private readonly TimeProvider _time;
    private readonly ITimer _sweeper;
    private long _nextId;
    private volatile bool _disposed;

    public TcpClientConnector(TlsConfiguration tls, int maxFrameSize, TimeSpan connectTimeout, TimeSpan idleTimeout, TimeProvider time)
    {
        _tls = tls;
        _maxFrameSize = maxFrameSize;
        _connectTimeout = connectTimeout;
        _idleTimeout = idleTimeout;
        _time = time;
        _sweeper = time.CreateTimer(static s => ((TcpClientConnector)s!).Sweep(), this, ConnectionSweep.Interval, ConnectionSweep.Interval);
    }

    public string Name => TransportKinds.Tcp;

    internal TimeProvider Time => _time;

    public async ValueTask<ClientStream> OpenAsync(string address, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var pool = _idle.GetOrAdd(address, static (_, time) => new IdlePool(time), _time);
        pool.Touch();
        while (pool.TryTake(out var idle))
        {
            if (idle.IsReusable())
            {
                return idle.Rent(this, pool, reused: true);
            }

            await idle.CloseAsync().ConfigureAwait(false);
        }

        var endpoint = await Addresses.ResolveAsync(address, cancellationToken).ConfigureAwait(false);
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        TcpSockets.Configure(socket);
        SslStream? ssl = null;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_connectTimeout);
            await socket.ConnectAsync(endpoint, timeout.Token).ConfigureAwait(false);
            ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(_tls.ClientOptions(Addresses.Split(address).Host), timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            await DisposeQuietly(ssl, socket).ConfigureAwait(false);
            throw new IOException($"connect to {address} timed out after {_connectTimeout.TotalSeconds:0.#} s");
        }
        catch
        {
            await DisposeQuietly(ssl, socket).ConfigureAwait(false);
            throw;
        }

        var conn = new TcpClientConnection($"tcp-c{Interlocked.Increment(ref _nextId)}", socket, ssl, _maxFrameSize, _time);
        return conn.Rent(this, pool, reused: false);
    }

    /// <summary>Closes the idle connections to <paramref name="address"/> now; busy ones close when their response ends.</summary>
    public void Forget(string address)
    {
        if (_idle.TryRemove(address, out var pool))
        {
            foreach (var conn in pool.Retire())
            {
                _ = conn.CloseAsync();
            }
        }
    }

    internal void Return(TcpClientConnection conn, IdlePool pool)
    {
        conn.Writer.Trim();
        if (_disposed || !pool.TryAdd(conn, MaxIdlePerAddress))
        {
            _ = conn.CloseAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        await _sweeper.DisposeAsync().ConfigureAwait(false);
        foreach (var address in _idle.Keys)
        {
            if (_idle.TryRemove(address, out var pool))
            {
                foreach (var c in pool.Retire())
                {
                    await c.CloseAsync().ConfigureAwait(false);
                }
            }
        }
    }

    private void Sweep()
    {
        foreach (var (address, pool) in _idle)
        {
            foreach (var conn in pool.TakeStale(_idleTimeout))
            {
                _ = conn.CloseAsync();
            }

            // A pool nobody used for a whole idle timeout belongs to an instance that is likely gone.
            if (pool.IsUnusedFor(_idleTimeout) && _idle.TryRemove(new KeyValuePair<string, IdlePool>(address, pool)))
            {
                foreach (var conn in pool.Retire())
                {
                    _ = conn.CloseAsync();
                }
            }
        }
    }

    private static async ValueTask DisposeQuietly(SslStream? ssl, Socket socket)
    {
        if (ssl is not null)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
        }

        socket.Dispose();
    }

    /// <summary>
    /// The idle connections to one address, most recently returned last (reused first, so the others can idle
    /// out). Once retired (its address forgotten or swept away) it keeps nothing: connections returned to it
    /// are closed. Thread-safe.
    /// </summary>
    internal sealed class IdlePool(TimeProvider time)
    {
        private readonly List<TcpClientConnection> _connections = [];
        private bool _retired;

        // When a request last asked for a connection to this address, or one came back.
        private long _lastUsed = time.GetTimestamp();

        public void Touch()
        {
            lock (_connections)
            {
                _lastUsed = time.GetTimestamp();
            }
        }

        public bool TryTake([MaybeNullWhen(false)] out TcpClientConnection conn)
        {
            lock (_connections)
            {
                if (_connections.Count == 0)
                {
                    conn = null;
                    return false;
                }

                conn = _connections[^1];
                _connections.RemoveAt(_connections.Count - 1);
                return true;
            }
        }

        public bool TryAdd(TcpClientConnection conn, int max)
        {
            lock (_connections)
            {
                if (_retired || _connections.Count >= max)
                {
                    return false;
                }

                _connections.Add(conn);
                _lastUsed = time.GetTimestamp();
                return true;
            }
        }

        /// <summary>Removes and returns connections idle for longer than <paramref name="idleTimeout"/> or closed by the server.</summary>
        public List<TcpClientConnection> TakeStale(TimeSpan idleTimeout)
        {
            var stale = new List<TcpClientConnection>();
            lock (_connections)
            {
                _connections.RemoveAll(c =>
                {
                    if (c.IdleFor() >= idleTimeout || !c.IsOpen())
                    {
                        stale.Add(c);
                        return true;
                    }

                    return false;
                });
            }

            return stale;
        }

        /// <summary>Empty, and nobody asked for or returned a connection for <paramref name="idleTimeout"/>.</summary>
        public bool IsUnusedFor(TimeSpan idleTimeout)
        {
            lock (_connections)
            {
                return _connections.Count == 0 && time.GetElapsedTime(_lastUsed) >= idleTimeout;
            }
        }

        /// <summary>Stops keeping connections and returns those it held.</summary>
        public List<TcpClientConnection> Retire()
        {
            lock (_connections)
            {
                _retired = true;
                var all = new List<TcpClientConnection>(_connections);
                _connections.Clear();
                return all;
            }
        }
    }
}

internal sealed class TcpClientConnection(string id, Socket socket, SslStream ssl, int maxFrameSize, TimeProvider time)
{
    private long _returnedAt = time.GetTimestamp();

    public string Id => id;

    public FrameReader Reader { get; } = new(ssl, maxFrameSize);

    public FrameWriter Writer { get; } = new(ssl, maxFrameSize);

    /// <summary>When it last went back to the pool.</summary>
    public long ReturnedAt => Volatile.Read(ref _returnedAt);

    /// <summary>How long it has been in the pool.</summary>
    public TimeSpan IdleFor() => time.GetElapsedTime(ReturnedAt);

    /// <summary>
    /// An idle connection must have nothing to read: readable with no bytes means the server closed it
    /// (restart, idle timeout), and unexpected bytes mean it is out of step. Either way, don't reuse it.
    /// </summary>
    public bool IsReusable()
    {
        // Returned moments ago: skip the poll syscall. If the server closed it in that window anyway, the
        // router retries once on a fresh connection without counting an attempt (ClientStream.Reused).
        if (IdleFor() < TimeSpan.FromSeconds(1))
        {
            return true;
        }

        return IsOpen();
    }

    /// <summary>Whether the server has neither closed it nor sent anything unasked (checked with a poll).</summary>
    public bool IsOpen()
    {
        try
        {
            return socket.Connected && !socket.Poll(0, SelectMode.SelectRead);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    public void MarkReturned() => Volatile.Write(ref _returnedAt, time.GetTimestamp());

    /// <summary>Shuts the socket down under a pending read (which then ends); the connection is never reused.</summary>
    public void Interrupt()
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
    }

    public ClientStream Rent(TcpClientConnector owner, TcpClientConnector.IdlePool pool, bool reused) => new Lease(this, owner, pool) { Reused = reused };

    public async ValueTask CloseAsync()
    {
        Writer.Dispose();
        await Reader.DisposeAsync().ConfigureAwait(false);
        await ssl.DisposeAsync().ConfigureAwait(false);
    }

    private sealed class Lease(TcpClientConnection conn, TcpClientConnector owner, TcpClientConnector.IdlePool pool) : ClientStream
    {
        public override string ConnectionId => conn.Id;

        public override FrameReader Reader => conn.Reader;

        public override FrameWriter Writer => conn.Writer;

        public override void Interrupt() => conn.Interrupt();

        protected override ValueTask OnReleaseAsync()
        {
            conn.MarkReturned();
            owner.Return(conn, pool);
            return ValueTask.CompletedTask;
        }

        protected override ValueTask OnAbortAsync() => conn.CloseAsync();
    }
}

/// <summary>Socket settings shared by both ends of the TCP transport.</summary>
internal static class TcpSockets
{
    public static void Configure(Socket socket)
    {
        socket.NoDelay = true;

        // A peer that vanished without closing (host lost, cable pulled) is detected in about 8 s
        // (5 s idle, then 3 probes 1 s apart) instead of hanging a stream forever.
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, 5);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 1);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 3);
        }
        catch (SocketException)
        {
            // Not every platform exposes every option; keep-alive is a safety net, not a requirement.
        }
    }
}
