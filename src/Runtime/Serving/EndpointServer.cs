using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;
using RequestMigration.Transport;

namespace RequestMigration.Serving;

/// <summary>
/// Serves endpoints on one listener and registers them in discovery as one instance. Add endpoints, then
/// <see cref="StartAsync"/>; <see cref="StopAsync"/> shuts down gracefully: deregister first, stop accepting,
/// let in-flight streams finish within <see cref="RuntimeOptions.DrainTimeout"/>, then cancel and close.
/// </summary>
public sealed partial class EndpointServer : IAsyncDisposable
{
    private readonly RequestMigrationRuntime _runtime;
    private readonly ILogger _logger;
    private readonly Dictionary<string, IEndpointInvoker> _endpoints = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<StreamSession, Task> _sessions = new();
    private readonly ConcurrentDictionary<IServerConnection, byte> _connections = new();
    private readonly CancellationTokenSource _hardStop = new();
    private readonly CancellationTokenSource _stopAccepting = new();
    private ITransportListener? _listener;
    private InstanceRegistrar? _registrar;
    private Task _acceptLoop = Task.CompletedTask;
    private int _state; // 0 new, 1 started, 2 stopping/stopped
    private volatile bool _draining;

    internal EndpointServer(RequestMigrationRuntime runtime)
    {
        _runtime = runtime;
        _logger = runtime.LoggerFactory.CreateLogger<EndpointServer>();
        MaxFrameSize = runtime.Options.MaxFrameSize;
        IdleTimeout = runtime.Options.IdleTimeout;
        RequestBuffers = new Wire.BufferBudget(runtime.Options.MaxBufferedRequestBytes);
    }

    /// <summary>This server's instance id (valid after <see cref="StartAsync"/>).</summary>
    public ulong InstanceId { get; private set; }

    /// <summary>The <c>host:port</c> written into discovery (valid after <see cref="StartAsync"/>).</summary>
    public string Address { get; private set; } = string.Empty;

    /// <summary>The transport in use, <c>quic</c> or <c>tcp</c> (valid after <see cref="StartAsync"/>).</summary>
    public string Transport { get; private set; } = string.Empty;

    internal int MaxFrameSize { get; }

    internal TimeSpan IdleTimeout { get; }

    /// <summary>Bytes all sessions hold for request frames still arriving, against <see cref="RuntimeOptions.MaxBufferedRequestBytes"/>.</summary>
    internal Wire.BufferBudget RequestBuffers { get; }

    internal TimeProvider Time => _runtime.Time;

    internal bool IsDraining => _draining;

    internal CancellationToken HardStopToken => _hardStop.Token;

    /// <summary>Adds an endpoint; call before <see cref="StartAsync"/>.</summary>
    /// <param name="endpoint">The endpoint's name.</param>
    /// <param name="handler">Produces the response stream of each request.</param>
    /// <param name="metadata">Labels published in the instance record.</param>
    public EndpointServer AddEndpoint<TRequest, TResponse>(EndpointId endpoint, EndpointHandler<TRequest, TResponse> handler, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (Volatile.Read(ref _state) != 0)
        {
            throw new InvalidOperationException("endpoints must be added before the server starts");
        }

        if (!_endpoints.TryAdd(endpoint.Path, new EndpointInvoker<TRequest, TResponse>(endpoint, handler, _runtime.Serializer, metadata ?? new Dictionary<string, string>())))
        {
            throw new InvalidOperationException($"endpoint '{endpoint}' is already added");
        }

        return this;
    }

    /// <summary>Listens, then registers every endpoint in discovery.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            throw new InvalidOperationException("the server was already started");
        }

        if (_endpoints.Count == 0)
        {
            throw new InvalidOperationException("add at least one endpoint before starting the server");
        }

        var options = _runtime.Options;
        var kind = _runtime.Transports.ResolveServerTransport();
        _listener = await _runtime.Transports.ListenAsync(kind, new IPEndPoint(IPAddress.Parse(options.ListenHost), options.ListenPort), cancellationToken).ConfigureAwait(false);
        var host = string.IsNullOrWhiteSpace(options.AdvertiseHost) ? _listener.LocalEndPoint.Address.ToString() : options.AdvertiseHost;
        Address = host.Contains(':', StringComparison.Ordinal) ? $"[{host}]:{_listener.LocalEndPoint.Port}" : $"{host}:{_listener.LocalEndPoint.Port}";
        Transport = kind == TransportKind.Quic ? TransportKinds.Quic : TransportKinds.Tcp;
        _acceptLoop = AcceptLoopAsync(_listener);

        _registrar = await InstanceRegistrar.StartAsync(_runtime.Registry, options.Discovery.LeaseTtl, _runtime.Time, _runtime.LoggerFactory.CreateLogger<InstanceRegistrar>(), cancellationToken).ConfigureAwait(false);
        InstanceId = _registrar.InstanceId;
        foreach (var invoker in _endpoints.Values)
        {
            var record = new InstanceRecord
            {
                InstanceId = InstanceId,
                Namespace = invoker.Endpoint.Namespace,
                Component = invoker.Endpoint.Component,
                Endpoint = invoker.Endpoint.Endpoint,
                Transport = Transport,
                Address = Address,
                Metadata = invoker.Metadata,
            };
            await _registrar.RegisterAsync(record, cancellationToken).ConfigureAwait(false);
            Log.Serving(_logger, invoker.Endpoint.Path, InstanceId, Transport, Address, _runtime.Store.Name);
        }
    }

    /// <summary>
    /// Graceful shutdown (see the class remarks). Safe to call more than once. If
    /// <paramref name="cancellationToken"/> fires, the graceful part is cut short, but the server still
    /// stops: connections are closed and the lease is revoked.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _state, 2) != 1)
        {
            return;
        }

        _draining = true;
        LogStopping(InstanceId, _sessions.Count);
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

            await _stopAccepting.CancelAsync().ConfigureAwait(false);
            if (_listener is not null)
            {
                await _listener.DisposeAsync().ConfigureAwait(false);
            }

            try
            {
                await _acceptLoop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }

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
        }
    }

    /// <summary>Stops the server (gracefully) if it is running.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _hardStop.Dispose();
        _stopAccepting.Dispose();
    }

    internal IEndpointInvoker? FindEndpoint(string path) => _endpoints.GetValueOrDefault(path);

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

    private async Task AcceptLoopAsync(ITransportListener listener)
    {
        var ct = _stopAccepting.Token;
        while (!ct.IsCancellationRequested)
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
            catch (Exception ex) when (ex is System.Threading.Channels.ChannelClosedException or ObjectDisposedException)
            {
                return;
            }

            _connections.TryAdd(conn, 0);
            _ = ServeConnectionAsync(conn);
        }
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


    [LoggerMessage(Level = LogLevel.Information, Message = "server: instance {InstanceId:x} stopping: deregistered, draining {InFlight} stream(s)")]
    private partial void LogStopping(ulong instanceId, int inFlight);

    [LoggerMessage(Level = LogLevel.Warning, Message = "server: instance {InstanceId:x} drain timeout: cancelling {Remaining} stream(s)")]
    private partial void LogDrainTimeout(ulong instanceId, int remaining);

    [LoggerMessage(Level = LogLevel.Information, Message = "server: instance {InstanceId:x} stopped")]
    private partial void LogStopped(ulong instanceId);

    [LoggerMessage(Level = LogLevel.Debug, Message = "server: connection {ConnectionId} from {Remote}")]
    private partial void LogConnection(string connectionId, string remote);

    [LoggerMessage(Level = LogLevel.Error, Message = "server: session on {ConnectionId} failed")]
    private partial void LogSessionFailed(Exception ex, string connectionId);
}
