using System.Collections.Concurrent;
using System.Net;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;
using RequestMigration.Transport;
using RequestMigration.Wire;

namespace RequestMigration.Serving;

/// <summary>
/// Serves endpoints and registers them in discovery as one instance. Add endpoints, then
/// <see cref="StartAsync"/>; <see cref="StopAsync"/> shuts down gracefully: deregister first, keep serving for
/// <see cref="RuntimeOptions.DeregistrationGracePeriod"/> while routers learn of it, stop accepting, close
/// connections between responses, let in-flight streams finish within <see cref="RuntimeOptions.DrainTimeout"/>,
/// then cancel and close.
/// With <c>DYN_TRANSPORT=auto</c> and QUIC available it listens on QUIC and on TCP (same port number where
/// free), advertising QUIC first, so clients without QUIC reach it too.
/// </summary>
public sealed partial class EndpointServer : IAsyncDisposable, IDisposable
{
    private readonly RequestMigrationRuntime _runtime;
    private readonly ILogger _logger;
    private readonly Dictionary<string, IEndpointInvoker> _endpoints = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<StreamSession, Task> _sessions = new();
    // Each open connection with the number of requests in progress on it (MaxConcurrentStreamsPerConnection).
    private readonly ConcurrentDictionary<IServerConnection, StrongBox<int>> _connections = new();
    private readonly CancellationTokenSource _hardStop = new();
    private readonly CancellationTokenSource _stopAccepting = new();
    private readonly List<ITransportListener> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConnectionGate _gate;
    private readonly RejectionLog _rejections;
    private InstanceRegistrar? _registrar;
    private Task _starting = Task.CompletedTask;
    private int _state = (int)ServerState.New;

    // Requests in progress over every connection (MaxConcurrentStreams).
    private long _streams;
    private volatile bool _draining;

    private enum ServerState
    {
        New,
        Starting,
        Running,

        /// <summary>Stopping or stopped; also where a start that failed ends.</summary>
        Stopped,
    }

    internal EndpointServer(RequestMigrationRuntime runtime, ServerOptions options)
    {
        options.Validate();
        Tags = options.Tags;
        _runtime = runtime;
        _logger = runtime.LoggerFactory.CreateLogger<EndpointServer>();
        Limits = runtime.Options.Limits;
        MaxFrameSize = runtime.Options.MaxFrameSize;
        MaxRequestFrameSize = Limits.EffectiveRequestFrameSize(MaxFrameSize);
        IdleTimeout = Limits.IdleTimeout;
        RequestBuffers = new Wire.BufferBudget(Limits.MaxBufferedRequestBytes);
        _gate = new ConnectionGate(Limits.MaxConcurrentConnections);
        _rejections = new RejectionLog(Limits.RejectionLogInterval, runtime.Time);
    }

    /// <summary>This server's instance id (valid after <see cref="StartAsync"/>).</summary>
    public ulong InstanceId { get; private set; }

    /// <summary>The <c>host:port</c> written into discovery (valid after <see cref="StartAsync"/>).</summary>
    public string Address { get; private set; } = string.Empty;

    /// <summary>The preferred transport, <c>quic</c> or <c>tcp</c> (valid after <see cref="StartAsync"/>).</summary>
    public string Transport { get; private set; } = string.Empty;

    /// <summary>The tags published in the server's instance records.</summary>
    public IReadOnlyDictionary<string, string> Tags { get; private set; }

    /// <summary>Every transport and address the server listens on, preferred first (valid after <see cref="StartAsync"/>).</summary>
    public IReadOnlyList<InstanceAddress> Addresses { get; private set; } = [];

    /// <summary>
    /// Completes once the server has stopped: after <see cref="StopAsync"/>, after a failed start, or when the
    /// server stopped by itself because it could no longer accept connections (logged as an error). A host
    /// can watch it to exit a process that no longer serves anything.
    /// </summary>
    public Task Completion => _completion.Task;

    /// <summary>The listeners, for tests that make one fail.</summary>
    internal IReadOnlyList<ITransportListener> Listeners => _listeners;

    /// <summary>Largest response frame written.</summary>
    internal int MaxFrameSize { get; }

    /// <summary>Largest request frame read (<see cref="ServerLimits.MaxRequestFrameSize"/>, capped by <see cref="MaxFrameSize"/>).</summary>
    internal int MaxRequestFrameSize { get; }

    internal ServerLimits Limits { get; }

    internal TimeSpan IdleTimeout { get; }

    /// <summary>Connections open now (admitted against <see cref="ServerLimits.MaxConcurrentConnections"/>).</summary>
    internal long ConnectionCount => _gate.Count;

    /// <summary>Requests in progress now (against <see cref="ServerLimits.MaxConcurrentStreams"/>).</summary>
    internal long StreamCount => Volatile.Read(ref _streams);

    /// <summary>Bytes all sessions hold for request frames still arriving, against <see cref="ServerLimits.MaxBufferedRequestBytes"/>.</summary>
    internal Wire.BufferBudget RequestBuffers { get; }

    internal TimeProvider Time => _runtime.Time;

    /// <summary>Whether sessions answer heartbeat pings (tests turn it off to play a server that is alive but stalled).</summary>
    internal bool AnswerHeartbeats { get; set; } = true;

    internal bool IsDraining => _draining;

    internal CancellationToken HardStopToken => _hardStop.Token;

    /// <summary>Adds an endpoint; call before <see cref="StartAsync"/>.</summary>
    /// <param name="endpoint">The endpoint's name.</param>
    /// <param name="handler">Produces the response stream of each request.</param>
    /// <param name="metadata">Labels published in the instance record.</param>
    public EndpointServer AddEndpoint<TRequest, TResponse>(EndpointId endpoint, EndpointHandler<TRequest, TResponse> handler, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (Volatile.Read(ref _state) != (int)ServerState.New)
        {
            throw new InvalidOperationException("endpoints must be added before the server starts");
        }

        if (!_endpoints.TryAdd(endpoint.Path, new EndpointInvoker<TRequest, TResponse>(endpoint, handler, _runtime.Serializer, metadata ?? new Dictionary<string, string>())))
        {
            throw new InvalidOperationException($"endpoint '{endpoint}' is already added");
        }

        return this;
    }

    /// <summary>
    /// Listens, then registers every endpoint in discovery. If anything fails (or <see cref="StopAsync"/> is
    /// called meanwhile) nothing stays listening or registered.
    /// </summary>
    /// <exception cref="PlatformNotSupportedException"><c>DYN_TRANSPORT=quic</c> without libmsquic.</exception>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.CompareExchange(ref _state, (int)ServerState.Starting, (int)ServerState.New) != (int)ServerState.New)
        {
            throw new InvalidOperationException("the server was already started");
        }

        if (_endpoints.Count == 0)
        {
            Volatile.Write(ref _state, (int)ServerState.New);
            throw new InvalidOperationException("add at least one endpoint before starting the server");
        }

        _starting = StartCoreAsync(cancellationToken);
        return _starting;
    }

    private async Task StartCoreAsync(CancellationToken cancellationToken)
    {
        try
        {
            await ListenAsync(cancellationToken).ConfigureAwait(false);
            var options = _runtime.Options;
            _registrar = await InstanceRegistrar.StartAsync(_runtime.Registry, options.Discovery.LeaseTtl, options.Discovery.StartupTimeout, _runtime.Time, _runtime.LoggerFactory.CreateLogger<InstanceRegistrar>(), cancellationToken).ConfigureAwait(false);
            InstanceId = _registrar.InstanceId;
            foreach (var invoker in _endpoints.Values)
            {
                ThrowIfStopRequested();
                await _registrar.RegisterAsync(RecordFor(invoker), cancellationToken).ConfigureAwait(false);
                Log.Serving(_logger, invoker.Endpoint.Path, InstanceId, Transport, Address, _runtime.Store.Name);
            }

            if (Interlocked.CompareExchange(ref _state, (int)ServerState.Running, (int)ServerState.Starting) != (int)ServerState.Starting)
            {
                ThrowIfStopRequested();
            }
        }
        catch
        {
            Volatile.Write(ref _state, (int)ServerState.Stopped);
            await CloseAfterFailedStartAsync().ConfigureAwait(false);
            throw;
        }
    }

    private void ThrowIfStopRequested()
    {
        if (Volatile.Read(ref _state) == (int)ServerState.Stopped)
        {
            throw new OperationCanceledException("the server was stopped while it was starting");
        }
    }

    private async Task ListenAsync(CancellationToken cancellationToken)
    {
        var options = _runtime.Options;
        var kinds = _runtime.Transports.ResolveServerTransports();
        var ip = IPAddress.Parse(options.ListenHost);
        var host = string.IsNullOrWhiteSpace(options.AdvertiseHost) ? options.ListenHost : options.AdvertiseHost;

        // With two transports, TCP binds first so a free port (0) is chosen once, then QUIC takes the same
        // number on UDP (a separate port space); if that UDP port is taken, QUIC gets its own free port.
        var order = kinds.Count > 1 ? kinds.Reverse() : kinds;
        var bound = new Dictionary<TransportKind, ITransportListener>();
        var settings = new ListenerSettings(Limits, _gate, _runtime.Time, (limit, remote, reason) => OnLimit(limit, RejectionLog.PeerOf(remote), reason));
        var port = options.ListenPort;
        foreach (var kind in order)
        {
            ITransportListener listener;
            try
            {
                listener = await _runtime.Transports.ListenAsync(kind, new IPEndPoint(ip, port), settings, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (bound.Count > 0 && options.ListenPort == 0 && ex is System.Net.Sockets.SocketException or System.Net.Quic.QuicException)
            {
                listener = await _runtime.Transports.ListenAsync(kind, new IPEndPoint(ip, 0), settings, cancellationToken).ConfigureAwait(false);
            }

            _listeners.Add(listener);
            bound[kind] = listener;
            port = listener.LocalEndPoint.Port;
        }

        Addresses = [.. kinds.Select(k => new InstanceAddress(k == TransportKind.Quic ? TransportKinds.Quic : TransportKinds.Tcp, FormatAddress(host, bound[k].LocalEndPoint.Port)))];
        Transport = Addresses[0].Transport;
        Address = Addresses[0].Address;
        foreach (var (kind, listener) in bound)
        {
            var transport = kind == TransportKind.Quic ? TransportKinds.Quic : TransportKinds.Tcp;
            _acceptLoops.Add(AcceptLoopAsync(listener, transport, FormatAddress(host, listener.LocalEndPoint.Port)));
        }
    }

    private static string FormatAddress(string host, int port) =>
        host.Contains(':', StringComparison.Ordinal) ? $"[{host}]:{port}" : $"{host}:{port}";

    private InstanceRecord RecordFor(IEndpointInvoker invoker) => new()
    {
        InstanceId = InstanceId,
        Namespace = invoker.Endpoint.Namespace,
        Component = invoker.Endpoint.Component,
        Endpoint = invoker.Endpoint.Endpoint,
        Transport = Transport,
        Address = Address,
        Alternates = [.. Addresses.Skip(1)],
        Tags = Tags,
        Metadata = invoker.Metadata,
    };

    /// <summary>
    /// Replaces the server's tags and re-registers its records, so routers filtering on tags take it in or
    /// leave it out without a restart.
    /// </summary>
    /// <exception cref="ArgumentException">The tags break a limit of <see cref="InstanceTags"/>.</exception>
    /// <exception cref="InvalidOperationException">The server is not running.</exception>
    public async Task UpdateTagsAsync(IReadOnlyDictionary<string, string> tags, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tags);
        InstanceTags.Validate(tags, "tags");
        if (Volatile.Read(ref _state) != (int)ServerState.Running || _registrar is null)
        {
            throw new InvalidOperationException("the server is not running");
        }

        Tags = tags;
        foreach (var invoker in _endpoints.Values)
        {
            await _registrar.RegisterAsync(RecordFor(invoker), cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task CloseAfterFailedStartAsync()
    {
        await _stopAccepting.CancelAsync().ConfigureAwait(false);
        await CloseListenersAsync().ConfigureAwait(false);
        if (_registrar is not null)
        {
            await _registrar.DisposeAsync().ConfigureAwait(false);
        }

        _completion.TrySetResult();
    }

    private async Task CloseListenersAsync()
    {
        foreach (var listener in _listeners)
        {
            await listener.DisposeAsync().ConfigureAwait(false);
        }

        try
        {
            await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// Graceful shutdown (see the class remarks). Safe to call more than once, and while
    /// <see cref="StartAsync"/> runs (the start then fails and leaves nothing registered). If
    /// <paramref name="cancellationToken"/> fires, the graceful part is cut short, but the server still
    /// stops: connections are closed and the lease is revoked.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        var previous = (ServerState)Interlocked.Exchange(ref _state, (int)ServerState.Stopped);
        if (previous == ServerState.Starting)
        {
            // The start sees the state and undoes itself; wait for that so nothing is left behind when we return.
            try
            {
                await _starting.ConfigureAwait(false);
            }
            catch (Exception)
            {
            }

            return;
        }

        if (previous != ServerState.Running)
        {
            if (previous == ServerState.New)
            {
                // Never started: stopped all the same.
                _completion.TrySetResult();
            }

            return;
        }

        try
        {
            if (_registrar is not null)
            {
                try
                {
                    await _registrar.DeregisterAllAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    // Revoking the lease below removes the records all the same.
                }
            }

            // Routers learn of the deregistration through their watch; until then they may still pick this
            // instance, so serve them as usual rather than make them go elsewhere.
            var grace = _runtime.Options.DeregistrationGracePeriod;
            if (grace > TimeSpan.Zero && !cancellationToken.IsCancellationRequested)
            {
                LogDeregistered(InstanceId, grace.TotalSeconds);
                try
                {
                    await Task.Delay(grace, _runtime.Time, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
            }

            _draining = true;
            LogStopping(InstanceId, _sessions.Count);
            foreach (var conn in _connections.Keys)
            {
                conn.StopAcceptingStreams();
            }

            await _stopAccepting.CancelAsync().ConfigureAwait(false);
            await CloseListenersAsync().ConfigureAwait(false);

            foreach (var session in _sessions.Keys)
            {
                if (!session.IsBusy)
                {
                    session.Close();
                }
            }

            if (!await WaitForSessionsAsync(_runtime.Options.DrainTimeout, cancellationToken).ConfigureAwait(false))
            {
                LogDrainTimeout(InstanceId, _sessions.Count);
            }
        }
        finally
        {
            // Whatever happened above, the server must end up stopped: no zombie instance that stays
            // registered or keeps accepting.
            await _hardStop.CancelAsync().ConfigureAwait(false);
            foreach (var conn in _connections.Keys)
            {
                if (_connections.TryRemove(conn, out _))
                {
                    try
                    {
                        await conn.DisposeAsync().ConfigureAwait(false);
                    }
                    catch (Exception ex) when (TransportErrors.IsBroken(ex) || ex is InvalidOperationException)
                    {
                    }
                }
            }

            await WaitForSessionsAsync(TimeSpan.FromSeconds(2), CancellationToken.None).ConfigureAwait(false);
            if (_registrar is not null)
            {
                await _registrar.DisposeAsync().ConfigureAwait(false);
            }

            LogStopped(InstanceId);
            _completion.TrySetResult();
        }
    }

    /// <summary>
    /// Stops the server (gracefully) if it is running, blocking until it has; for containers disposed
    /// synchronously. Prefer <see cref="StopAsync"/> or <see cref="DisposeAsync"/>.
    /// </summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>Stops the server (gracefully) if it is running.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _hardStop.Dispose();
        _stopAccepting.Dispose();
    }

    internal IEndpointInvoker? FindEndpoint(string path) => _endpoints.GetValueOrDefault(path);

    /// <summary>
    /// Admits one more request on <paramref name="connection"/> unless that takes the server over
    /// <see cref="ServerLimits.MaxConcurrentStreams"/> or the connection over
    /// <see cref="ServerLimits.MaxConcurrentStreamsPerConnection"/>. Null when admitted (release it with
    /// <see cref="ReleaseStream"/>); otherwise what to tell the peer, already counted and logged.
    /// </summary>
    internal string? TryAdmitStream(IServerConnection connection)
    {
        var limit = Limits.MaxConcurrentStreams;
        var current = Volatile.Read(ref _streams);
        while (true)
        {
            if (current >= limit)
            {
                return Refuse(nameof(ServerLimits.MaxConcurrentStreams), connection.Remote, $"server busy: {current} requests in progress on instance {InstanceId:x}, the limit (MaxConcurrentStreams, DYN_MAX_STREAMS) is {limit}; try another instance");
            }

            var seen = Interlocked.CompareExchange(ref _streams, current + 1, current);
            if (seen == current)
            {
                break;
            }

            current = seen;
        }

        if (connection.IsMultiplexed && _connections.TryGetValue(connection, out var onConnection))
        {
            var perConnection = Interlocked.Increment(ref onConnection.Value);
            if (perConnection > Limits.MaxConcurrentStreamsPerConnection)
            {
                Interlocked.Decrement(ref onConnection.Value);
                Interlocked.Decrement(ref _streams);
                return Refuse(nameof(ServerLimits.MaxConcurrentStreamsPerConnection), connection.Remote, $"server busy: {perConnection - 1} requests in progress on this connection, the limit (MaxConcurrentStreamsPerConnection, DYN_MAX_STREAMS_PER_CONNECTION) is {Limits.MaxConcurrentStreamsPerConnection}; try another instance");
            }
        }

        _runtime.Metrics.ServerStream(TransportOf(connection), 1);
        return null;
    }

    /// <summary>A request admitted by <see cref="TryAdmitStream"/> has ended.</summary>
    internal void ReleaseStream(IServerConnection connection)
    {
        if (connection.IsMultiplexed && _connections.TryGetValue(connection, out var onConnection))
        {
            Interlocked.Decrement(ref onConnection.Value);
        }

        Interlocked.Decrement(ref _streams);
        _runtime.Metrics.ServerStream(TransportOf(connection), -1);
    }

    /// <summary>Counts a request admitted on <paramref name="connection"/> and handed to <paramref name="endpoint"/>'s handler.</summary>
    internal void OnRequest(IServerConnection connection, string endpoint) => _runtime.Metrics.RequestStarted(endpoint, TransportOf(connection));

    /// <summary>Counts a request or stream rejected with <paramref name="code"/> (bad input, unknown endpoint, draining).</summary>
    internal void OnRejected(IServerConnection connection, ErrorCode code) => _runtime.Metrics.RequestRejected(TransportOf(connection), code);

    /// <summary>
    /// The transport a connection came in on, for metric attributes. From its type rather than from the accept
    /// loop: a stream that ends after its connection left <c>_connections</c> must still take itself off the
    /// series it was added to.
    /// </summary>
    private static string TransportOf(IServerConnection connection) =>
        connection is Transport.Quic.QuicServerConnection ? TransportKinds.Quic : TransportKinds.Tcp;

    /// <summary>Counts and (rate-limited) logs a peer stopped by a limit other than the stream limits.</summary>
    internal void OnLimit(string limit, string peer, string reason)
    {
        _runtime.Metrics.LimitReached(limit);
        if (_rejections.ShouldLog(peer, limit, out var suppressed))
        {
            LogLimitReached(limit, peer, reason, suppressed);
        }
    }

    private string Refuse(string limit, string remote, string message)
    {
        OnLimit(limit, RejectionLog.PeerOf(remote), message);
        return message;
    }

    private async Task<bool> WaitForSessionsAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var all = Task.WhenAll(_sessions.Values);
        try
        {
            await all.WaitAsync(timeout, _runtime.Time, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private async Task AcceptLoopAsync(ITransportListener listener, string transport, string address)
    {
        var ct = _stopAccepting.Token;
        Exception failure;
        while (true)
        {
            IServerConnection conn;
            try
            {
                conn = await listener.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (Exception) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                failure = ex is System.Threading.Channels.ChannelClosedException { InnerException: { } inner } ? inner : ex;
                break;
            }

            _connections.TryAdd(conn, new StrongBox<int>());
            _ = ServeConnectionAsync(conn);
        }

        // Nobody asked this loop to end: the listener failed. Registered but deaf, the instance would take
        // every router's next requests and refuse them, so leave discovery and stop (in-flight streams on
        // connections already accepted still finish within the drain timeout). Not awaited: stopping waits
        // for this loop to return.
        LogAcceptLoopDied(failure, InstanceId, transport, address, failure.Message);
        _ = Task.Run(() => StopAsync());
    }

    private async Task ServeConnectionAsync(IServerConnection conn)
    {
        LogConnection(conn.Id, conn.Remote);
        try
        {
            while (!_hardStop.IsCancellationRequested)
            {
                var stream = await conn.AcceptStreamAsync(_hardStop.Token).ConfigureAwait(false);
                if (stream is null)
                {
                    break;
                }

                if (conn.IsMultiplexed)
                {
                    _ = RunSessionAsync(conn, stream, disposeStream: true);
                }
                else
                {
                    await RunSessionAsync(conn, stream, disposeStream: false).ConfigureAwait(false);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException || TransportErrors.IsBroken(ex))
        {
        }
        finally
        {
            if (_connections.TryRemove(conn, out _))
            {
                await conn.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private async Task RunSessionAsync(IServerConnection conn, Stream stream, bool disposeStream)
    {
        var session = new StreamSession(this, conn, stream, _logger);
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _sessions[session] = tcs.Task;
        try
        {
            await session.RunAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            LogSessionFailed(ex, conn.Id);
        }
        finally
        {
            if (disposeStream)
            {
                try
                {
                    await stream.DisposeAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (TransportErrors.IsBroken(ex))
                {
                }
            }

            _sessions.TryRemove(session, out _);
            tcs.TrySetResult();
        }
    }


    [LoggerMessage(EventId = 222, EventName = "Deregistered", Level = LogLevel.Information, Message = "server: instance {InstanceId:x} deregistered; serving for {GraceSeconds} s more while routers learn of it (DYN_DEREGISTRATION_GRACE_SECS)")]
    private partial void LogDeregistered(ulong instanceId, double graceSeconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "server: instance {InstanceId:x} stopping: deregistered, draining {InFlight} stream(s)")]
    private partial void LogStopping(ulong instanceId, int inFlight);

    [LoggerMessage(Level = LogLevel.Warning, Message = "server: instance {InstanceId:x} drain timeout: cancelling {Remaining} stream(s)")]
    private partial void LogDrainTimeout(ulong instanceId, int remaining);

    [LoggerMessage(Level = LogLevel.Information, Message = "server: instance {InstanceId:x} stopped")]
    private partial void LogStopped(ulong instanceId);

    [LoggerMessage(EventId = 220, EventName = "AcceptLoopDied", Level = LogLevel.Error, Message = "server: instance {InstanceId:x} stopped accepting {Transport} connections on {Address} ({Reason}); deregistering and stopping")]
    private partial void LogAcceptLoopDied(Exception ex, ulong instanceId, string transport, string address, string reason);

    [LoggerMessage(EventId = 221, EventName = "LimitReached", Level = LogLevel.Warning, Message = "server: {Limit} reached, refused peer {Peer}: {Reason} ({Suppressed} more from this peer not logged since the last report)")]
    private partial void LogLimitReached(string limit, string peer, string reason, long suppressed);

    [LoggerMessage(Level = LogLevel.Debug, Message = "server: connection {ConnectionId} from {Remote}")]
    private partial void LogConnection(string connectionId, string remote);

    [LoggerMessage(Level = LogLevel.Error, Message = "server: session on {ConnectionId} failed")]
    private partial void LogSessionFailed(Exception ex, string connectionId);
}
