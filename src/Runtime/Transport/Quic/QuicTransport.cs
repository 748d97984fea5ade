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

    /// <summary>A response cut on purpose after its last item (the read side is stopped, the write side finished).</summary>
    public const long StreamCut = 0x12;
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

    public static async ValueTask<QuicTransportListener> StartAsync(IPEndPoint endpoint, TlsConfiguration tls, QuicConnectionSettings settings, ILogger logger, CancellationToken cancellationToken)
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
                    IdleTimeout = settings.IdleTimeout,
                    KeepAliveInterval = settings.KeepAliveInterval,
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

    public void Cut(Stream stream)
    {
        if (stream is QuicStream q)
        {
            // FIN, not RESET_STREAM: a reset would discard items already written but not yet acknowledged.
            // The client reads them all, then an end of stream without an End frame. Stopping our read side
            // ends the session's pending read; it sends STOP_SENDING and leaves the write side alone.
            q.CompleteWrites();
            q.Abort(QuicAbortDirection.Read, QuicErrors.StreamCut);
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
/// request. A connection that failed to connect or has died is evicted (and disposed), and the next request
/// dials again; a connect that times out fails like TCP's, with an <see cref="IOException"/>.
/// </summary>
[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("osx")]
internal sealed class QuicClientConnector(TlsConfiguration tls, int maxFrameSize, TimeSpan connectTimeout, QuicConnectionSettings settings) : IClientConnector
{
    // Invariant: a cached task is either still connecting or completed successfully; any other ending
    // evicts it (Evict), so a failed or timed-out connect never poisons later requests to that address.
    private readonly ConcurrentDictionary<string, Lazy<Task<QuicConnection>>> _connections = new(StringComparer.Ordinal);
    private long _nextStream;
    private volatile bool _disposed;

    public string Name => TransportKinds.Quic;

    public async ValueTask<ClientStream> OpenAsync(string address, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var lazy = _connections.GetOrAdd(address, a => new Lazy<Task<QuicConnection>>(() => ConnectAsync(a)));
            var connecting = lazy.Value;
            QuicConnection conn;
            try
            {
                conn = await connecting.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch when (connecting.IsCompleted)
            {
                // The connect itself failed (refused, unreachable, timed out, handshake failed). A caller that
                // merely gave up waiting leaves a connect others may still be waiting for alone.
                Evict(address, lazy);
                throw;
            }

            try
            {
                var stream = await conn.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, cancellationToken).ConfigureAwait(false);
                return new QuicClientStream($"{address}#{Interlocked.Increment(ref _nextStream)}", stream, maxFrameSize);
            }
            catch (Exception ex) when (ex is QuicException or ObjectDisposedException && !cancellationToken.IsCancellationRequested)
            {
                // The cached connection died (peer restarted, idle timeout): forget it and dial once more.
                Evict(address, lazy);
                if (attempt > 0)
                {
                    throw;
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        foreach (var (address, lazy) in _connections)
        {
            if (_connections.TryRemove(new KeyValuePair<string, Lazy<Task<QuicConnection>>>(address, lazy)) && lazy.IsValueCreated)
            {
                await DisposeWhenDoneAsync(lazy.Value).ConfigureAwait(false);
            }
        }
    }

    private void Evict(string address, Lazy<Task<QuicConnection>> lazy)
    {
        if (_connections.TryRemove(new KeyValuePair<string, Lazy<Task<QuicConnection>>>(address, lazy)))
        {
            _ = DisposeWhenDoneAsync(lazy.Value);
        }
    }

    private static async Task DisposeWhenDoneAsync(Task<QuicConnection> connecting)
    {
        QuicConnection conn;
        try
        {
            conn = await connecting.ConfigureAwait(false);
        }
        catch
        {
            return;
        }

        try
        {
            await conn.CloseAsync(QuicErrors.Shutdown).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is QuicException or ObjectDisposedException or OperationCanceledException)
        {
        }

        await conn.DisposeAsync().ConfigureAwait(false);
    }

    private async Task<QuicConnection> ConnectAsync(string address)
    {
        using var timeout = new CancellationTokenSource(connectTimeout);
        try
        {
            var endpoint = await Addresses.ResolveAsync(address, timeout.Token).ConfigureAwait(false);
            return await QuicConnection.ConnectAsync(
                new QuicClientConnectionOptions
                {
                    RemoteEndPoint = endpoint,
                    DefaultStreamErrorCode = QuicErrors.StreamAborted,
                    DefaultCloseErrorCode = QuicErrors.Shutdown,
                    ClientAuthenticationOptions = tls.ClientOptions(Addresses.Split(address).Host),
                    MaxInboundBidirectionalStreams = 0,
                    MaxInboundUnidirectionalStreams = 0,
                    IdleTimeout = settings.IdleTimeout,
                    KeepAliveInterval = settings.KeepAliveInterval,
                },
                timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            // Our own timeout ends the task Canceled, which callers would read as "the caller cancelled".
            throw new IOException($"connect to {address} timed out after {connectTimeout.TotalSeconds:0.#} s");
        }
    }

    private sealed class QuicClientStream(string id, QuicStream stream, int maxFrameSize) : ClientStream
    {
        private readonly FrameReader _reader = new(stream, maxFrameSize);
        private readonly FrameWriter _writer = new(stream, maxFrameSize);

        public override string ConnectionId => id;

        public override FrameReader Reader => _reader;

        public override FrameWriter Writer => _writer;

        private volatile bool _interrupted;

        public override void Interrupt()
        {
            _interrupted = true;
            try
            {
                stream.Abort(QuicAbortDirection.Both, QuicErrors.StreamAborted);
            }
            catch (ObjectDisposedException)
            {
            }
        }

        protected override async ValueTask OnReleaseAsync()
        {
            stream.CompleteWrites();
            await CloseAsync().ConfigureAwait(false);
        }

        protected override async ValueTask OnAbortAsync()
        {
            stream.Abort(QuicAbortDirection.Both, QuicErrors.StreamAborted);
            if (_interrupted)
            {
                // Interrupted because the peer stopped answering heartbeats. Disposing a QuicStream waits for
                // the peer to acknowledge the abort, which a hung peer never does: msquic gives up on the
                // connection only at its disconnect timeout (about 16 s), and the request would wait that long
                // before failing over. Let the stream finish closing in the background instead.
                _writer.Dispose();
                await _reader.DisposeAsync().ConfigureAwait(false);
                _ = DisposeInBackgroundAsync(stream);
                return;
            }

            await CloseAsync().ConfigureAwait(false);
        }

        private static async Task DisposeInBackgroundAsync(QuicStream stream)
        {
            try
            {
                await stream.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is QuicException or ObjectDisposedException or OperationCanceledException)
            {
            }
        }

        private async ValueTask CloseAsync()
        {
            _writer.Dispose();
            await _reader.DisposeAsync().ConfigureAwait(false);
            await stream.DisposeAsync().ConfigureAwait(false);
        }
    }
}
