using System.Collections.Concurrent;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using RequestMigration.Serving;
using RequestMigration.Transport.Mux;
using RequestMigration.Transport.Tls;
using RequestMigration.Wire;

namespace RequestMigration.Transport.Tcp;

/// <summary>A TCP connection speaking <c>rm/2</c>: many request streams at once, each served as a QUIC stream would be.</summary>
internal sealed class MuxServerConnection(string id, string remote, MuxConnection mux, ConnectionGate.Ticket ticket) : IServerConnection
{
    private int _disposed;

    public string Id => id;

    public string Remote => remote;

    public bool IsMultiplexed => true;

    public async ValueTask<Stream?> AcceptStreamAsync(CancellationToken cancellationToken) =>
        await mux.AcceptStreamAsync(cancellationToken).ConfigureAwait(false);

    public void Abort(Stream stream) => ((MuxStream)stream).Abort();

    // FIN after everything written: the consumer reads every item, then the end without an End frame.
    public void Cut(Stream stream) => ((MuxStream)stream).CompleteWrites();

    public void Complete(Stream stream) => ((MuxStream)stream).CompleteWrites();

    public void StopAcceptingStreams() => mux.GoAway("the server is shutting down");

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            await mux.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            ticket.Release();
        }
    }
}

/// <summary>
/// Client side of TCP + TLS: multiplexed (<c>rm/2</c>) connections pooled per address, each carrying many request
/// streams; the pool starts with one connection and opens another (up to <see cref="RuntimeOptions.MaxConnectionsPerInstance"/>)
/// whenever every connection carries <see cref="StreamsBeforeGrowing"/> streams or more. A server that only speaks
/// <c>rm/1</c> is remembered and reached through the one-request-per-connection connector.
/// </summary>
/// <remarks>
/// Every <see cref="ConnectionSweep.Interval"/> the pools are swept: broken connections and connections with no
/// stream for longer than the idle timeout are closed. <see cref="Forget"/> closes an address's idle connections
/// at once and the busy ones when their last stream ends.
/// </remarks>
internal sealed partial class MuxClientConnector : IClientConnector
{
    /// <summary>Streams a connection carries before the pool opens another (while under the connection cap).</summary>
    public const int StreamsBeforeGrowing = 64;

    private readonly ConcurrentDictionary<string, AddressPool> _pools = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _legacyAddresses = new(StringComparer.Ordinal);
    private readonly TcpClientConnector _legacy;
    private readonly TlsConfiguration _tls;
    private readonly int _maxFrameSize;
    private readonly TimeSpan _connectTimeout;
    private readonly TimeSpan _idleTimeout;
    private readonly int _maxConnections;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ITimer _sweeper;
    private long _nextId;
    private volatile bool _disposed;

    public MuxClientConnector(TlsConfiguration tls, int maxFrameSize, TimeSpan connectTimeout, TimeSpan idleTimeout, int maxConnections, TimeProvider time, ILogger logger)
    {
        _tls = tls;
        _maxFrameSize = maxFrameSize;
        _connectTimeout = connectTimeout;
        _idleTimeout = idleTimeout;
        _maxConnections = maxConnections;
        _time = time;
        _logger = logger;
        _legacy = new TcpClientConnector(tls, maxFrameSize, connectTimeout, idleTimeout, time);
        _sweeper = time.CreateTimer(static s => ((MuxClientConnector)s!).Sweep(), this, ConnectionSweep.Interval, ConnectionSweep.Interval);
    }

    public string Name => TransportKinds.Tcp;

    /// <summary>Multiplexed connections open to <paramref name="address"/> now (for tests and diagnostics).</summary>
    internal int ConnectionCount(string address) => _pools.TryGetValue(address, out var pool) ? pool.Count : 0;

    public async ValueTask<ClientStream> OpenAsync(string address, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_legacyAddresses.ContainsKey(address))
        {
            return await _legacy.OpenAsync(address, cancellationToken).ConfigureAwait(false);
        }

        var pool = _pools.GetOrAdd(address, static (a, c) => new AddressPool(c, a), this);
        for (var attempt = 0; ; attempt++)
        {
            var (connection, reused) = await pool.GetAsync(cancellationToken).ConfigureAwait(false);
            if (connection is null)
            {
                // The server negotiated rm/1: it predates multiplexing.
                _legacyAddresses.TryAdd(address, 0);
                return await _legacy.OpenAsync(address, cancellationToken).ConfigureAwait(false);
            }

            try
            {
                var stream = connection.OpenStream();
                return new MuxClientStream(connection.Id, stream, _maxFrameSize) { Reused = reused };
            }
            catch (IOException) when (attempt == 0)
            {
                // It broke, filled up or started going away since we looked: take another, or a new one.
            }
        }
    }

    public void Forget(string address)
    {
        _legacy.Forget(address);
        _legacyAddresses.TryRemove(address, out _);
        if (_pools.TryRemove(address, out var pool))
        {
            pool.Retire();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        await _sweeper.DisposeAsync().ConfigureAwait(false);
        foreach (var address in _pools.Keys)
        {
            if (_pools.TryRemove(address, out var pool))
            {
                await pool.CloseAllAsync().ConfigureAwait(false);
            }
        }

        await _legacy.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Connects and negotiates; null when the server speaks only <c>rm/1</c>.</summary>
    private async Task<MuxConnection?> ConnectAsync(string address)
    {
        using var timeout = new CancellationTokenSource(_connectTimeout, _time);
        Socket? socket = null;
        SslStream? ssl = null;
        try
        {
            var endpoint = await Addresses.ResolveAsync(address, timeout.Token).ConfigureAwait(false);
            socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            TcpSockets.Configure(socket);
            await socket.ConnectAsync(endpoint, timeout.Token).ConfigureAwait(false);
            ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(_tls.ClientOptions(Addresses.Split(address).Host, [TlsConfiguration.MuxAlpn, TlsConfiguration.Alpn]), timeout.Token).ConfigureAwait(false);
            if (ssl.NegotiatedApplicationProtocol != TlsConfiguration.MuxAlpn)
            {
                await ssl.DisposeAsync().ConfigureAwait(false);
                return null;
            }

            var id = $"tcp-m{Interlocked.Increment(ref _nextId)}";
            return await MuxConnection.StartAsync(ssl, isClient: true, MuxSettings.Default(maxConcurrentStreams: 1), id, _logger, timeout.Token, _time).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            await DisposeQuietly(ssl, socket).ConfigureAwait(false);
            throw new IOException($"connect to {address} timed out after {_connectTimeout.TotalSeconds:0.#} s");
        }
        catch
        {
            await DisposeQuietly(ssl, socket).ConfigureAwait(false);
            throw;
        }
    }

    private static async ValueTask DisposeQuietly(SslStream? ssl, Socket? socket)
    {
        if (ssl is not null)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
        }

        socket?.Dispose();
    }

    private void Sweep()
    {
        for (var n = _orphans.Count; n > 0 && _orphans.TryDequeue(out var orphan); n--)
        {
            orphan.Sweep(TimeSpan.Zero);
            if (orphan.Count > 0)
            {
                _orphans.Enqueue(orphan);
            }
        }

        foreach (var (address, pool) in _pools)
        {
            pool.Sweep(_idleTimeout);
            if (pool.IsUnusedFor(_idleTimeout) && _pools.TryRemove(new KeyValuePair<string, AddressPool>(address, pool)))
            {
                pool.Retire();
            }
        }
    }

    /// <summary>The connections to one address. Thread-safe; at most one connect in flight at a time.</summary>
    private sealed class AddressPool(MuxClientConnector owner, string address)
    {
        private readonly Lock _gate = new();
        private readonly List<MuxConnection> _connections = [];
        private Task<MuxConnection?>? _connecting;
        private bool _retired;
        private long _lastUsed = owner._time.GetTimestamp();

        public int Count
        {
            get
            {
                lock (_gate)
                {
                    return _connections.Count;
                }
            }
        }

        /// <summary>A connection with room (the least busy), or a new one; null: the server speaks only rm/1.</summary>
        public async ValueTask<(MuxConnection? Connection, bool Reused)> GetAsync(CancellationToken cancellationToken)
        {
            while (true)
            {
                Task<MuxConnection?> connecting;
                lock (_gate)
                {
                    _lastUsed = owner._time.GetTimestamp();
                    MuxConnection? best = null;
                    var bestLoad = int.MaxValue;
                    foreach (var c in _connections)
                    {
                        var load = c.ActiveStreams;
                        if (load < bestLoad && c.CanOpenStream)
                        {
                            best = c;
                            bestLoad = load;
                        }
                    }

                    var full = _connections.Count >= owner._maxConnections;
                    if (best is not null && (bestLoad < StreamsBeforeGrowing || full || _connecting is not null))
                    {
                        return (best, true);
                    }

                    if (best is null && full && _connecting is null)
                    {
                        // Every allowed connection is full or going away: the oldest broken or departing ones make
                        // room; if none does, one more is opened rather than failing the request.
                        _connections.RemoveAll(c => !c.IsAlive && c.ActiveStreams == 0);
                    }

                    _connecting ??= ConnectAndAddAsync();
                    connecting = _connecting;
                }

                var connection = await connecting.WaitAsync(cancellationToken).ConfigureAwait(false);
                if (connection is null)
                {
                    return (null, false);
                }

                if (connection.CanOpenStream)
                {
                    return (connection, false);
                }
            }
        }

        /// <summary>Drops connections that broke and ones idle (no stream) for longer than <paramref name="idleTimeout"/>.</summary>
        public void Sweep(TimeSpan idleTimeout)
        {
            List<MuxConnection>? close = null;
            lock (_gate)
            {
                foreach (var c in _connections)
                {
                    var broken = !c.IsAlive && c.Completion.IsCompleted;
                    var idle = c.ActiveStreams == 0 && (!c.IsAlive || _retired || c.IdleFor >= idleTimeout);
                    if (broken || idle)
                    {
                        (close ??= []).Add(c);
                    }
                }

                foreach (var c in close ?? [])
                {
                    _connections.Remove(c);
                }
            }

            foreach (var c in close ?? [])
            {
                _ = c.DisposeAsync();
            }
        }

        public bool IsUnusedFor(TimeSpan idleTimeout)
        {
            lock (_gate)
            {
                return _connections.Count == 0 && _connecting is null && owner._time.GetElapsedTime(_lastUsed) >= idleTimeout;
            }
        }

        /// <summary>The address is forgotten: idle connections close now, busy ones once the sweep finds them idle.</summary>
        public void Retire()
        {
            lock (_gate)
            {
                _retired = true;
            }

            Sweep(TimeSpan.Zero);
            lock (_gate)
            {
                // Busy ones take no new streams and are closed by the sweep once their last stream ends.
                foreach (var c in _connections)
                {
                    c.GoAway("the client forgot this instance");
                }

                if (_connections.Count > 0)
                {
                    owner._orphans.Enqueue(this);
                }
            }
        }

        public async Task CloseAllAsync()
        {
            List<MuxConnection> all;
            lock (_gate)
            {
                _retired = true;
                all = [.. _connections];
                _connections.Clear();
            }

            foreach (var c in all)
            {
                await c.DisposeAsync().ConfigureAwait(false);
            }
        }

        private async Task<MuxConnection?> ConnectAndAddAsync()
        {
            try
            {
                var connection = await owner.ConnectAsync(address).ConfigureAwait(false);
                if (connection is not null)
                {
                    lock (_gate)
                    {
                        _connections.Add(connection);
                    }
                }

                return connection;
            }
            finally
            {
                lock (_gate)
                {
                    _connecting = null;
                }
            }
        }
    }

    // Pools whose address was forgotten while they still had busy connections: swept until they are empty.
    private readonly ConcurrentQueue<AddressPool> _orphans = new();

    private sealed class MuxClientStream(string connectionId, MuxStream stream, int maxFrameSize) : ClientStream
    {
        private readonly FrameReader _reader = new(stream, maxFrameSize);
        private readonly FrameWriter _writer = new(stream, maxFrameSize);

        // The stream's id is known once its first frame went out.
        public override string ConnectionId => $"{connectionId}#{stream.Id}";

        public override FrameReader Reader => _reader;

        public override FrameWriter Writer => _writer;

        public override void Interrupt() => stream.Abort();

        protected override async ValueTask OnReleaseAsync()
        {
            // The stream retires by itself when the server's FIN (right behind its End frame) arrives; disposing
            // it here could reset a stream the server is about to finish, for nothing.
            stream.CompleteWrites();
            _writer.Dispose();
            await _reader.DisposeAsync().ConfigureAwait(false);
        }

        protected override async ValueTask OnAbortAsync()
        {
            stream.Abort();
            _writer.Dispose();
            await _reader.DisposeAsync().ConfigureAwait(false);
        }
    }
}
