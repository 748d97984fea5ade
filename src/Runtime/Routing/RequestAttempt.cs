using RequestMigration.Health;
using RequestMigration.Transport;
using RequestMigration.Wire;

namespace RequestMigration.Routing;

/// <summary>
/// One attempt of a request on one instance. It owns its transport stream and the instance's in-flight
/// count from <see cref="StartAsync"/> until it is disposed, and reports how it ended as an
/// <see cref="AttemptOutcome"/> instead of throwing: only the consumer's cancellation escapes as an exception.
/// </summary>
/// <remarks>
/// Use: <see cref="StartAsync"/> (connect and send); while it and then <see cref="ReadAsync"/> return null,
/// <see cref="Current"/> holds the next item; dispose. The stream goes back to its pool only if the response
/// ended with its end or error frame; anything else (including a consumer that stops early) resets it,
/// which cancels the handler.
/// </remarks>
internal sealed class RequestAttempt<TResponse> : IAsyncDisposable, IHeartbeatTarget
{
    private readonly RequestMigrationRuntime _runtime;
    private readonly InstanceState _instance;
    private readonly TimeSpan? _firstItemTimeout;
    private readonly HeartbeatMonitor? _heartbeats;
    private ClientStream? _stream;
    private volatile string? _interruptedBy;
    private bool _monitored;
    private bool _acquired;
    private bool _clean;
    private bool _sendFailed;

    public RequestAttempt(RequestMigrationRuntime runtime, InstanceState instance, TimeSpan? firstItemTimeout, HeartbeatMonitor? heartbeats = null)
    {
        _runtime = runtime;
        _instance = instance;
        _firstItemTimeout = firstItemTimeout;
        _heartbeats = heartbeats;
    }

    public InstanceState Instance => _instance;

    /// <summary>The item read by the last <see cref="ReadAsync"/> that returned null.</summary>
    public TResponse Current { get; private set; } = default!;

    /// <summary>Frames of the response read so far.</summary>
    public int FramesSeen { get; private set; }

    /// <summary>Data items delivered by this attempt.</summary>
    public long ItemsRead { get; private set; }

    /// <summary>Connects and sends the request. Null when the request went out (read next); otherwise how the attempt ended.</summary>
    /// <exception cref="ArgumentException">The request exceeds the maximum frame size (the caller's mistake, not retried).</exception>
    public async ValueTask<AttemptOutcome?> StartAsync(RequestHeader header, PooledBufferWriter payload, CancellationToken cancellationToken)
    {
        var record = _instance.Record;
        _instance.Acquire();
        _acquired = true;
        try
        {
            var (connector, address) = _runtime.Transports.Select(record);
            _stream = await connector.OpenAsync(address, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested && AttemptClassifier.IsAttemptFailure(ex))
        {
            return AttemptClassifier.ConnectFailed(ex, record.InstanceId, record.Address);
        }

        try
        {
            var output = _stream.Writer.BeginFrame(FrameType.Request);
            header.Write(output);
            payload.WrittenMemory.Span.CopyTo(output.GetSpan(payload.WrittenCount));
            output.Advance(payload.WrittenCount);
            _stream.Writer.EndFrame();
            await _stream.Writer.FlushAsync(cancellationToken).ConfigureAwait(false);

            // The request is the only frame this side buffers (pings bypass the buffer): give the buffer back
            // now rather than holding it for the whole response, which for a long stream may be hours.
            _stream.Writer.Trim();
        }
        catch (ProtocolException ex) when (ex.Code == ErrorCode.FrameTooLarge)
        {
            throw new ArgumentException($"request to {header.EndpointPath} is too large: {ex.Message}", "request", ex);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested && TransportErrors.IsBroken(ex))
        {
            // The server may have rejected the request and closed before we finished writing (a frame over
            // its limit, say): read on, its error frame is likely waiting.
            _sendFailed = true;
        }

        if (_heartbeats is not null && !_sendFailed)
        {
            _heartbeats.Register(_instance, this);
            _monitored = true;
        }

        return null;
    }

    /// <summary>Reads the next frame. Null when <see cref="Current"/> holds a new item; otherwise how the attempt ended.</summary>
    public async ValueTask<AttemptOutcome?> ReadAsync(CancellationToken cancellationToken)
    {
        var stream = _stream!;
        bool got;
        while (true)
        {
            try
            {
                got = FramesSeen == 0 && _firstItemTimeout is { } limit
                    ? await ReadFirstAsync(stream, limit, cancellationToken).ConfigureAwait(false)
                    : await stream.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException) when (_firstItemTimeout is { } limit && !cancellationToken.IsCancellationRequested)
            {
                return AttemptClassifier.TimedOut(limit);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested && (ex is ProtocolException || AttemptClassifier.IsAttemptFailure(ex)))
            {
                return _interruptedBy is { } reason ? AttemptClassifier.Interrupted(reason) : AttemptClassifier.ReceiveFailed(ex, stream.Reused, FramesSeen);
            }

            if (got && stream.Reader.Type == FrameType.Pong)
            {
                // A heartbeat reply, not part of the response (a stray one left on a pooled connection is ignored).
                _heartbeats?.OnPong(_instance, stream.Reader.ReadHeartbeat());
                continue;
            }

            break;
        }

        if (!got)
        {
            return _interruptedBy is { } reason ? AttemptClassifier.Interrupted(reason) : AttemptClassifier.EndedEarly(stream.Reused, FramesSeen);
        }

        FramesSeen++;
        switch (stream.Reader.Type)
        {
            case FrameType.Data:
                try
                {
                    Current = _runtime.Serializer.Deserialize<TResponse>(stream.Reader.Payload);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    return AttemptClassifier.UndecodableItem(_instance.InstanceId, ex);
                }

                ItemsRead++;
                return null;
            case FrameType.End:
                _clean = true;
                return AttemptOutcome.Completed;
            case FrameType.Error:
                _clean = true;
                var (code, message) = stream.Reader.ReadError();
                return AttemptClassifier.ErrorFrame(code, message, FramesSeen);
            default:
                return AttemptClassifier.UnexpectedFrame(stream.Reader.Type);
        }
    }

    /// <summary>Sends a heartbeat on this attempt's stream (called by the heartbeat monitor, concurrently with reads).</summary>
    public async ValueTask<bool> SendPingAsync(ulong sequence)
    {
        if (_stream is not { } stream)
        {
            return false;
        }

        try
        {
            await stream.Writer.WriteHeartbeatAsync(FrameType.Ping, sequence, CancellationToken.None).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException || AttemptClassifier.IsAttemptFailure(ex))
        {
            // The stream ended meanwhile (or is breaking): the reply will be missed, which is the truth.
            return false;
        }
    }

    /// <summary>Breaks the stream because the instance was declared failed; the pending read ends with <paramref name="reason"/>.</summary>
    public void Interrupt(string reason)
    {
        _interruptedBy = reason;
        _stream?.Interrupt();
    }

    public async ValueTask DisposeAsync()
    {
        if (_monitored)
        {
            _monitored = false;
            _heartbeats!.Unregister(_instance, this);
        }

        if (_stream is { } stream)
        {
            _stream = null;
            if (_clean && !_sendFailed)
            {
                await stream.ReleaseAsync().ConfigureAwait(false);
            }
            else
            {
                await stream.DisposeAsync().ConfigureAwait(false);
            }
        }

        if (_acquired)
        {
            _acquired = false;
            _instance.Release();
        }
    }

    private async ValueTask<bool> ReadFirstAsync(ClientStream stream, TimeSpan limit, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(limit, _runtime.Time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            return await stream.Reader.ReadAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException();
        }
    }
}
