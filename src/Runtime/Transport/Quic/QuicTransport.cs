using System.Collections.Concurrent;
using System.Net;
using System.Net.Quic;
using System.Runtime.Versioning;
using Microsoft.Extensions.Logging;
using RequestMigration.Transport.Tls;
using RequestMigration.Wire;

namespace RequestMigration.Transport.Quic;

/// <summary>QUIC application error codes we send.</summary>
internal static class QuicErrors
{
    public const long None = 0;

    /// <summary>A stream reset on purpose (server cut it, or client abandoned it).</summary>
    public const long StreamAborted = 0x10;

    /// <summary>Connection closed because the process is shutting down.</summary>
    public const long Shutdown = 0x11;

    /// <summary>
    /// A peer killed without closing (kill -9, lost host) sends nothing more: keep-alives every second and
    /// a 5 s idle timeout make its connection fail, and the router fail over, within seconds.
    /// </summary>
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(5);

    /// <summary>See <see cref="IdleTimeout"/>.</summary>
    public static readonly TimeSpan KeepAliveInterval = TimeSpan.FromSeconds(1);
}

/// <summary>QUIC listener: TLS 1.3 with our ALPN; each connection carries many concurrent request streams.</summary>
[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("osx")]
internal sealed partial class QuicTransportListener : ITransportListener
{
    private readonly QuicListener _listener;
    private readonly ILogger _logger;
    private long _nextId;

    private QuicTransportListener(QuicListener listener, ILogger logger)
    {
        _listener = listener;
        _logger = logger;
    }

    public IPEndPoint LocalEndPoint => _listener.LocalEndPoint;

    public static async ValueTask<QuicTransportListener> StartAsync(IPEndPoint endpoint, TlsConfiguration tls, ILogger logger, CancellationToken cancellationToken)
    {
        var serverAuth = tls.ServerOptions();
        var listener = await QuicListener.ListenAsync(
            new QuicListenerOptions
            {
                ListenEndPoint = endpoint,
                ApplicationProtocols = [TlsConfiguration.Alpn],
                ListenBacklog = 512,
                ConnectionOptionsCallback = (_, _, _) => ValueTask.FromResult(new QuicServerConnectionOptions
                {
                    DefaultStreamErrorCode = QuicErrors.StreamAborted,
                    DefaultCloseErrorCode = QuicErrors.Shutdown,
                    ServerAuthenticationOptions = serverAuth,
                    MaxInboundBidirectionalStreams = 10_000,
                    MaxInboundUnidirectionalStreams = 0,
                    IdleTimeout = QuicErrors.IdleTimeout,
                    KeepAliveInterval = QuicErrors.KeepAliveInterval,
                }),
            },
            cancellationToken).ConfigureAwait(false);
        return new QuicTransportListener(listener, logger);
    }

    public async ValueTask<IServerConnection> AcceptAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                var conn = await _listener.AcceptConnectionAsync(cancellationToken).ConfigureAwait(false);
                return new QuicServerConnection($"quic-{Interlocked.Increment(ref _nextId)}", conn);
            }
            catch (Exception ex) when (ex is QuicException or System.Security.Authentication.AuthenticationException && !cancellationToken.IsCancellationRequested)
            {
                // A failed handshake affects that peer only.
                LogHandshakeFailed(ex.Message);
            }
        }
    }

    public ValueTask DisposeAsync() => _listener.DisposeAsync();

    [LoggerMessage(Level = LogLevel.Warning, Message = "quic: incoming connection failed its handshake ({Reason})")]
    private partial void LogHandshakeFailed(string reason);
}

[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("osx")]
internal sealed class QuicServerConnection(string id, QuicConnection connection) : IServerConnection
{
    private int _disposed;

    public string Id => id;

    public string Remote => connection.RemoteEndPoint.ToString();

    public bool IsMultiplexed => true;

    public async ValueTask<Stream?> AcceptStreamAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await connection.AcceptInboundStreamAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (QuicException)
        {
            return null;
        }
    }

    public void Abort(Stream stream)
    {
        if (stream is QuicStream q)
        {
            q.Abort(QuicAbortDirection.Both, QuicErrors.StreamAborted);
        }
    }

    public void Complete(Stream stream)
    {
        if (stream is QuicStream q)
        {
            q.CompleteWrites();
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Both the connection's own loop and a stopping server may dispose it; the second call is a no-op.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            await connection.CloseAsync(QuicErrors.Shutdown).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is QuicException or ObjectDisposedException)
        {
        }

        await connection.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>
/// Client side of QUIC: one connection per address, reused for every request; one bidirectional stream per
/// request. A connection that has failed is replaced on the next request.
/// </summary>
[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("osx")]
internal sealed class QuicClientConnector(TlsConfiguration tls, int maxFrameSize, TimeSpan connectTimeout) : IClientConnector
{
    private readonly ConcurrentDictionary<string, Lazy<Task<QuicConnection>>> _connections = new(StringComparer.Ordinal);
    private long _nextStream;

    public string Name => TransportKinds.Quic;

    public async ValueTask<ClientStream> OpenAsync(string address, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var lazy = _connections.GetOrAdd(address, a => new Lazy<Task<QuicConnection>>(() => ConnectAsync(a)));
            try
            {
                var conn = await lazy.Value.WaitAsync(cancellationToken).ConfigureAwait(false);
                var stream = await conn.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, cancellationToken).ConfigureAwait(false);
                return new QuicClientStream($"{address}#{Interlocked.Increment(ref _nextStream)}", stream, maxFrameSize);
            }
            catch (Exception ex) when (ex is QuicException or ObjectDisposedException && attempt == 0)
            {
                // The cached connection died (peer restarted, idle timeout): forget it and dial once more.
                _connections.TryRemove(new KeyValuePair<string, Lazy<Task<QuicConnection>>>(address, lazy));
            }
            catch
            {
                // Forget the cached connection only if connecting failed; a caller that merely gave up
                // waiting must not orphan a connection others are using.
                if (lazy.IsValueCreated && lazy.Value.IsFaulted)
                {
                    _connections.TryRemove(new KeyValuePair<string, Lazy<Task<QuicConnection>>>(address, lazy));
                }

                throw;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var lazy in _connections.Values)
        {
            if (lazy.IsValueCreated && lazy.Value.IsCompletedSuccessfully)
            {
                await lazy.Value.Result.DisposeAsync().ConfigureAwait(false);
            }
        }

        _connections.Clear();
    }

    private async Task<QuicConnection> ConnectAsync(string address)
    {
        var endpoint = await Addresses.ResolveAsync(address, CancellationToken.None).ConfigureAwait(false);
        using var timeout = new CancellationTokenSource(connectTimeout);
        return await QuicConnection.ConnectAsync(
            new QuicClientConnectionOptions
            {
                RemoteEndPoint = endpoint,
                DefaultStreamErrorCode = QuicErrors.StreamAborted,
                DefaultCloseErrorCode = QuicErrors.Shutdown,
                ClientAuthenticationOptions = tls.ClientOptions(Addresses.Split(address).Host),
                MaxInboundBidirectionalStreams = 0,
                MaxInboundUnidirectionalStreams = 0,
                IdleTimeout = QuicErrors.IdleTimeout,
                KeepAliveInterval = QuicErrors.KeepAliveInterval,
            },
            timeout.Token).ConfigureAwait(false);
    }

    private sealed class QuicClientStream(string id, QuicStream stream, int maxFrameSize) : ClientStream
    {
        private readonly FrameReader _reader = new(stream, maxFrameSize);
        private readonly FrameWriter _writer = new(stream, maxFrameSize);

        public override string ConnectionId => id;

        public override FrameReader Reader => _reader;

        public override FrameWriter Writer => _writer;

        protected override async ValueTask OnReleaseAsync()
        {
            stream.CompleteWrites();
            await CloseAsync().ConfigureAwait(false);
        }

        protected override async ValueTask OnAbortAsync()
        {
            stream.Abort(QuicAbortDirection.Both, QuicErrors.StreamAborted);
            await CloseAsync().ConfigureAwait(false);
        }

        private async ValueTask CloseAsync()
        {
            _writer.Dispose();
            await _reader.DisposeAsync().ConfigureAwait(false);
            await stream.DisposeAsync().ConfigureAwait(false);
        }
    }
}
