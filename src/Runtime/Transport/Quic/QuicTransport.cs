using System.Collections.Concurrent;
using System.Net;
using System.Net.Quic;
using System.Runtime.Versioning;
using Microsoft.Extensions.Logging;
using RequestMigration.Serving;
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

/// <summary>
/// QUIC listener: TLS 1.3 with our ALPN; each connection carries many concurrent request streams. The
/// handshake must finish within <see cref="ServerLimits.HandshakeTimeout"/>, and each peer gets stream credit
/// for a little more than <see cref="ServerLimits.MaxConcurrentStreamsPerConnection"/>.
/// </summary>
/// <remarks>
/// A connection over <see cref="ServerLimits.MaxConcurrentConnections"/> cannot be refused during the
/// handshake (the peer would see a TLS failure and blame its own certificates), so it is accepted, each request
/// it sends meanwhile is answered with an <see cref="ErrorCode.Unavailable"/> error frame (routers go elsewhere
/// without counting an attempt), and it is closed once it has been quiet for a moment.
/// </remarks>
[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("osx")]
internal sealed partial class QuicTransportListener : ITransportListener
{
    // A refused connection is kept this long after its last request, to answer requests already on their way.
    private static readonly TimeSpan RefusalLinger = TimeSpan.FromMilliseconds(500);

    private readonly QuicListener _listener;
    private readonly ListenerSettings _settings;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private long _nextId;

    private QuicTransportListener(QuicListener listener, ListenerSettings settings, ILogger logger)
    {
        _listener = listener;
        _settings = settings;
        _logger = logger;
    }

    public IPEndPoint LocalEndPoint => _listener.LocalEndPoint;

    public static async ValueTask<QuicTransportListener> StartAsync(IPEndPoint endpoint, TlsConfiguration tls, QuicConnectionSettings connection, ListenerSettings settings, ILogger logger, CancellationToken cancellationToken)
    {
        var serverAuth = tls.ServerOptions();
        var limits = settings.Limits;
        var listener = await QuicListener.ListenAsync(
            new QuicListenerOptions
            {
                ListenEndPoint = endpoint,
                ApplicationProtocols = [TlsConfiguration.Alpn],
                ListenBacklog = limits.ListenBacklog,
                ConnectionOptionsCallback = (_, _, _) => ValueTask.FromResult(new QuicServerConnectionOptions
                {
                    DefaultStreamErrorCode = QuicErrors.StreamAborted,
                    DefaultCloseErrorCode = QuicErrors.Shutdown,
                    ServerAuthenticationOptions = serverAuth,
                    MaxInboundBidirectionalStreams = limits.QuicStreamCredit,
                    MaxInboundUnidirectionalStreams = 0,
                    IdleTimeout = connection.IdleTimeout,
                    KeepAliveInterval = connection.KeepAliveInterval,
                    HandshakeTimeout = limits.HandshakeTimeout,
                }),
            },
            cancellationToken).ConfigureAwait(false);
        return new QuicTransportListener(listener, settings, logger);
    }

    public async ValueTask<IServerConnection> AcceptAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            QuicConnection conn;
            try
            {
                conn = await _listener.AcceptConnectionAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is QuicException or System.Security.Authentication.AuthenticationException && !cancellationToken.IsCancellationRequested)
            {
                // A failed handshake affects that peer only.
                LogHandshakeFailed(Diagnostics.LogValues.Sanitize(ex.Message));
                continue;
            }

            if (_settings.Gate.TryEnter() is { } ticket)
            {
                return new QuicServerConnection($"quic-{Interlocked.Increment(ref _nextId)}", conn, ticket);
            }

            var message = _settings.Gate.RefusalMessage;
            _settings.OnLimit(nameof(ServerLimits.MaxConcurrentConnections), conn.RemoteEndPoint, message);
            _ = RefuseAsync(conn, message);
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Not disposed: refusals still running link to its token.
        await _stop.CancelAsync().ConfigureAwait(false);
        await _listener.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Answers every request of an over-limit connection with <paramref name="message"/>, then closes it.</summary>
    private async Task RefuseAsync(QuicConnection conn, string message)
    {
        var answers = new List<Task>();
        try
        {
            // The first request may still be on its way (the peer has just connected): wait for it as long as a
            // handshake may take; after that only as long as requests keep coming.
            var wait = _settings.Limits.HandshakeTimeout;
            while (true)
            {
                using var quiet = new CancellationTokenSource(wait, _settings.Time);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(quiet.Token, _stop.Token);
                QuicStream stream;
                try
                {
                    stream = await conn.AcceptInboundStreamAsync(linked.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is OperationCanceledException or QuicException or ObjectDisposedException)
                {
                    break;
                }

                answers.Add(AnswerAsync(stream, message, _settings.Limits.HandshakeTimeout));
                wait = RefusalLinger;
            }

            await Task.WhenAll(answers).ConfigureAwait(false);
        }
        finally
        {
            await CloseQuietlyAsync(conn).ConfigureAwait(false);
        }
    }

    private async Task AnswerAsync(QuicStream stream, string message, TimeSpan timeout)
    {
        await using (stream.ConfigureAwait(false))
        {
            using var cts = new CancellationTokenSource(timeout, _settings.Time);
            try
            {
                using var writer = new FrameWriter(stream, int.MaxValue);
                writer.WriteError(ErrorCode.Unavailable, message);
                await writer.FlushAsync(cts.Token).ConfigureAwait(false);
                stream.CompleteWrites();

                // Closing the connection discards data the peer has not acknowledged: wait until it has the answer.
                await stream.WritesClosed.WaitAsync(cts.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or QuicException or IOException or ObjectDisposedException)
            {
            }
        }
    }

    private static async Task CloseQuietlyAsync(QuicConnection conn)
    {
        try
        {
            await conn.CloseAsync(QuicErrors.Shutdown).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is QuicException or ObjectDisposedException)
        {
        }

        await conn.DisposeAsync().ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "quic: incoming connection failed its handshake ({Reason})")]
    private partial void LogHandshakeFailed(string reason);
}

[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("osx")]
internal sealed class QuicServerConnection(string id, QuicConnection connection, ConnectionGate.Ticket ticket) : IServerConnection
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

    // The FIN goes with the last bytes: one send through msquic instead of a send and a shutdown.
    public ValueTask WriteLastAsync(Stream stream, ReadOnlyMemory<byte> last, CancellationToken cancellationToken) =>
        ((QuicStream)stream).WriteAsync(last, completeWrites: true, cancellationToken);

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
        ticket.Release();
    }
}

/// <summary>
/// Client side of QUIC: one connection per address, reused for every request; one bidirectional stream per
/// request. A connection that failed to connect or has died is evicted (and disposed), and the next request
/// dials again; a connect that times out fails like TCP's, with an <see cref="IOException"/>. A connection
/// that carried no stream for the idle timeout is closed by a sweep every second, and <see cref="Forget"/>
/// retires an address's connection: no new streams, closed once its last stream ends.
/// </summary>
[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("osx")]
internal sealed class QuicClientConnector : IClientConnector
{
    // TLS alert 90: the server application cancelled the handshake.
    private const string UserCanceledAlert = "'UserCanceled'";

    // Invariant: a cached entry's connect is either still running or completed successfully; any other ending
    // evicts it (Evict), so a failed or timed-out connect never poisons later requests to that address. An entry
    // leaves the dictionary before it is retired, so a retired entry is never handed to a new stream.
    private readonly ConcurrentDictionary<string, Entry> _connections = new(StringComparer.Ordinal);
    private readonly TlsConfiguration _tls;
    private readonly int _maxFrameSize;
    private readonly TimeSpan _connectTimeout;
    private readonly QuicConnectionSettings _settings;
    private readonly TimeSpan _idleTimeout;
    private readonly TimeProvider _time;
    private readonly ITimer _sweeper;
    private long _nextStream;
    private volatile bool _disposed;

    public QuicClientConnector(TlsConfiguration tls, int maxFrameSize, TimeSpan connectTimeout, QuicConnectionSettings settings, TimeSpan idleTimeout, TimeProvider time)
    {
        _tls = tls;
        _maxFrameSize = maxFrameSize;
        _connectTimeout = connectTimeout;
        _settings = settings;
        _idleTimeout = idleTimeout;
        _time = time;
        _sweeper = time.CreateTimer(static s => ((QuicClientConnector)s!).Sweep(), this, ConnectionSweep.Interval, ConnectionSweep.Interval);
    }

    public string Name => TransportKinds.Quic;

    public async ValueTask<ClientStream> OpenAsync(string address, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var entry = _connections.GetOrAdd(address, static (a, self) => new Entry(new Lazy<Task<QuicConnection>>(() => self.ConnectAsync(a)), self._time), this);
            if (!entry.TryAcquire())
            {
                // Retired between the lookup and now; the dictionary already holds its successor (or nothing).
                attempt--;
                continue;
            }

            var connecting = entry.Connect.Value;
            if (connecting.IsCompleted && !connecting.IsCompletedSuccessfully)
            {
                // A connect that failed after everyone waiting for it gave up: nobody evicted it, and its error
                // is old news. Dial afresh rather than fail (and blame the instance) with it.
                entry.Release();
                Evict(address, entry);
                attempt--;
                continue;
            }

            QuicConnection conn;
            try
            {
                conn = await connecting.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch when (connecting.IsCompleted)
            {
                // The connect itself failed (refused, unreachable, timed out, handshake failed). A caller that
                // merely gave up waiting leaves a connect others may still be waiting for alone.
                entry.Release();
                Evict(address, entry);
                throw;
            }
            catch
            {
                entry.Release();
                throw;
            }

            try
            {
                var stream = await conn.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, cancellationToken).ConfigureAwait(false);
                return new QuicClientStream($"{address}#{Interlocked.Increment(ref _nextStream)}", stream, _maxFrameSize, entry);
            }
            catch (Exception ex) when (ex is QuicException or ObjectDisposedException && !cancellationToken.IsCancellationRequested)
            {
                // The cached connection died (peer restarted, idle timeout): forget it and dial once more.
                entry.Release();
                Evict(address, entry);
                if (attempt > 0)
                {
                    throw;
                }
            }
            catch
            {
                entry.Release();
                throw;
            }
        }
    }

    /// <summary>No new streams to <paramref name="address"/> on its connection, which closes once its last stream ends.</summary>
    public void Forget(string address)
    {
        if (_connections.TryRemove(address, out var entry))
        {
            entry.Retire();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        await _sweeper.DisposeAsync().ConfigureAwait(false);
        foreach (var (address, entry) in _connections)
        {
            if (_connections.TryRemove(new KeyValuePair<string, Entry>(address, entry)) && entry.Connect.IsValueCreated)
            {
                await DisposeWhenDoneAsync(entry.Connect.Value).ConfigureAwait(false);
            }
        }
    }

    private void Evict(string address, Entry entry)
    {
        // The connection is dead: close it now, whatever streams it still has (they have failed anyway).
        if (_connections.TryRemove(new KeyValuePair<string, Entry>(address, entry)) && entry.Connect.IsValueCreated)
        {
            _ = DisposeWhenDoneAsync(entry.Connect.Value);
        }
    }

    private void Sweep()
    {
        foreach (var (address, entry) in _connections)
        {
            if (entry.IsIdleFor(_idleTimeout) && _connections.TryRemove(new KeyValuePair<string, Entry>(address, entry)))
            {
                entry.Retire();
            }
        }
    }

    /// <summary>One cached connection with the streams open on it. Thread-safe.</summary>
    private sealed class Entry(Lazy<Task<QuicConnection>> connect, TimeProvider time)
    {
        private int _streams;
        private bool _retired;
        private long _lastUsed = time.GetTimestamp();

        public Lazy<Task<QuicConnection>> Connect => connect;

        /// <summary>Counts a stream about to be opened; false once retired.</summary>
        public bool TryAcquire()
        {
            lock (this)
            {
                if (_retired)
                {
                    return false;
                }

                _streams++;
                return true;
            }
        }

        /// <summary>The connection was just used (a response ended): idle time counts from now.</summary>
        public void Touch()
        {
            lock (this)
            {
                _lastUsed = time.GetTimestamp();
            }
        }

        /// <summary>A stream ended (or was never opened); a retired connection closes with its last one.</summary>
        /// <param name="touch">Whether idle time counts from now (false when <see cref="Touch"/> already marked the end of use).</param>
        public void Release(bool touch = true)
        {
            bool close;
            lock (this)
            {
                _streams--;
                if (touch)
                {
                    _lastUsed = time.GetTimestamp();
                }

                close = _retired && _streams == 0;
            }

            if (close)
            {
                _ = DisposeWhenDoneAsync(connect.Value);
            }
        }

        /// <summary>No new streams; closes now if none is open, else when the last one ends.</summary>
        public void Retire()
        {
            bool close;
            lock (this)
            {
                if (_retired)
                {
                    return;
                }

                _retired = true;
                close = _streams == 0;
            }

            if (close && connect.IsValueCreated)
            {
                _ = DisposeWhenDoneAsync(connect.Value);
            }
        }

        /// <summary>Connected, without streams, and unused for <paramref name="idleTimeout"/>.</summary>
        public bool IsIdleFor(TimeSpan idleTimeout)
        {
            lock (this)
            {
                return _streams == 0 && connect.IsValueCreated && connect.Value.IsCompletedSuccessfully && time.GetElapsedTime(_lastUsed) >= idleTimeout;
            }
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
        using var timeout = new CancellationTokenSource(_connectTimeout);
        try
        {
            var endpoint = await Addresses.ResolveAsync(address, timeout.Token).ConfigureAwait(false);
            var connecting = QuicConnection.ConnectAsync(
                new QuicClientConnectionOptions
                {
                    RemoteEndPoint = endpoint,
                    DefaultStreamErrorCode = QuicErrors.StreamAborted,
                    DefaultCloseErrorCode = QuicErrors.Shutdown,
                    ClientAuthenticationOptions = _tls.ClientOptions(Addresses.Split(address).Host),
                    MaxInboundBidirectionalStreams = 0,
                    MaxInboundUnidirectionalStreams = 0,
                    IdleTimeout = _settings.IdleTimeout,
                    KeepAliveInterval = _settings.KeepAliveInterval,
                },
                timeout.Token).AsTask();
            try
            {
                // A cancelled connect only completes once msquic has shut the half-open connection down, which
                // takes another ~3 s against a peer that never answered: the timeout must not wait for that.
                return await connecting.WaitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                _ = connecting.ContinueWith(
                    static t =>
                    {
                        if (t.IsCompletedSuccessfully)
                        {
                            // Connected just as the timeout fired: nobody will use it.
                            _ = t.Result.DisposeAsync().AsTask();
                        }
                        else
                        {
                            _ = t.Exception;
                        }
                    },
                    CancellationToken.None,
                    TaskContinuationOptions.ExecuteSynchronously,
                    TaskScheduler.Default);
                throw;
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            // Our own timeout ends the task Canceled, which callers would read as "the caller cancelled".
            throw new IOException($"connect to {address} timed out after {_connectTimeout.TotalSeconds:0.#} s");
        }
        catch (System.Security.Authentication.AuthenticationException ex) when (ex.Message.Contains(UserCanceledAlert, StringComparison.Ordinal))
        {
            // The server application turned the connection away (its listener is closing, say): the instance's
            // state, not a certificate problem here, so the caller may go to another instance. The alert name
            // appears only in the message; it is the enum name, never translated.
            throw new IOException($"instance at {address} turned the QUIC connection away ({ex.Message.TrimEnd('.')}; it is stopping or cannot take connections)", ex);
        }
    }

    private sealed class QuicClientStream(string id, QuicStream stream, int maxFrameSize, Entry entry) : ClientStream
    {
        /// <summary>How long a released stream waits for the server's FIN before it is aborted instead.</summary>
        private static readonly TimeSpan FinWait = TimeSpan.FromSeconds(5);

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

        protected override ValueTask OnReleaseAsync()
        {
            stream.CompleteWrites();
            entry.Touch();

            // The server's FIN follows its End frame. Disposing before reading it would abort our read side,
            // and .NET reports that abort (on both ends) by throwing-and-capturing exceptions with their stack
            // traces: measured, that was most of a short request's CPU. So read to the end, off the caller's path.
            _ = CloseAfterFinAsync();
            return ValueTask.CompletedTask;
        }

        private async Task CloseAfterFinAsync()
        {
            try
            {
                while (true)
                {
                    // Usually the FIN is already here and this completes at once; a timer only when it is not.
                    var read = _reader.ReadAsync(CancellationToken.None);
                    var more = read.IsCompleted
                        ? read.Result
                        : await read.AsTask().WaitAsync(FinWait).ConfigureAwait(false);
                    if (!more)
                    {
                        break;
                    }

                    // Only a late heartbeat reply can follow the End frame; it needs no answer.
                }
            }
            catch (Exception)
            {
                // No FIN after all (a misbehaving or stalled peer): abort, which also ends the pending read.
                stream.Abort(QuicAbortDirection.Both, QuicErrors.StreamAborted);
            }

            await CloseAsync(touch: false).ConfigureAwait(false);
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

        private async ValueTask CloseAsync(bool touch = true)
        {
            try
            {
                _writer.Dispose();
                await _reader.DisposeAsync().ConfigureAwait(false);
                await stream.DisposeAsync().ConfigureAwait(false);
            }
            finally
            {
                entry.Release(touch);
            }
        }
    }
}
