using Microsoft.Extensions.Logging;
using RequestMigration.Diagnostics;
using RequestMigration.Transport;
using RequestMigration.Wire;

namespace RequestMigration.Serving;

/// <summary>
/// Serves the requests of one transport stream: a QUIC stream (one request) or a TCP connection (requests
/// one after another). The read loop keeps reading while a handler runs, so a consumer that cancels,
/// disconnects or resets is noticed at once and the handler's token fires.
/// </summary>
internal sealed class StreamSession
{
    private readonly EndpointServer _server;
    private readonly IServerConnection _connection;
    private readonly Stream _stream;
    private readonly ILogger _logger;
    private readonly FrameReader _reader;
    private readonly FrameWriter _writer;
    // Cancelled to end the session: by a draining server, or by its own timer when the session is idle
    // (no request in progress) for longer than the server's idle timeout. The pending read watches it.
    private readonly CancellationTokenSource _closed;
    private volatile bool _busy;

    // Set just before the final frame of a response is flushed: from then on the client may send the
    // next request on a TCP connection even though the handler task has not returned yet.
    private volatile bool _responseEnded;

    // Set by the read loop when the peer broke the protocol while a response was in progress: the loop
    // stops the handler, then ends the response itself with an error frame naming the problem.
    private volatile bool _rejecting;

    // A flush to the peer was interrupted: what reached the wire may end inside a frame, so no frame can
    // follow and the stream can only be reset.
    private volatile bool _flushInterrupted;

    // The last response was cut (stream reset) rather than ended with End or Error.
    private volatile bool _responseCut;

    // Why the read loop stopped the running handler, for the log line of its cancellation.
    private volatile string? _cancelReason;

    // The token source of the request in progress, so a failed write to the consumer can stop the handler.
    private CancellationTokenSource? _requestCts;

    // Armed while a flush to the consumer is pending (ServerLimits.WriteTimeout): a consumer that stops
    // reading must not pin the handler forever. Null when there is no write timeout.
    private readonly ITimer? _writeTimer;
    private volatile bool _flushing;

    public StreamSession(EndpointServer server, IServerConnection connection, Stream stream, ILogger logger)
    {
        _server = server;
        _connection = connection;
        _stream = stream;
        _logger = logger;
        _closed = new CancellationTokenSource(Timeout.InfiniteTimeSpan, server.Time);
        _reader = new FrameReader(stream, server.MaxRequestFrameSize, server.RequestBuffers);
        _writer = new FrameWriter(stream, server.MaxFrameSize);
        if (server.Limits.WriteTimeout is not null)
        {
            _writeTimer = server.Time.CreateTimer(static s => ((StreamSession)s!).OnWriteTimeout(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    public bool IsBusy => _busy;

    /// <summary>Stops reading (used on idle sessions when the server drains). Safe after the session ended.</summary>
    public void Close()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public async Task RunAsync()
    {
        ArmIdleTimer();
        Task? current = null;
        CancellationTokenSource? currentCts = null;
        try
        {
            while (true)
            {
                bool got;
                try
                {
                    got = await _reader.ReadAsync(_closed.Token).ConfigureAwait(false);
                }
                catch (ProtocolException ex)
                {
                    _server.OnRejected(_connection, ex.Code);
                    if (ex.Limit is { } limit)
                    {
                        // A limit, logged like the others (once per peer per interval), not once per connection.
                        _server.OnLimit(limit, RejectionLog.PeerOf(_connection.Remote), ex.Message);
                    }
                    else
                    {
                        Log.BadInput(_logger, _connection.Id, _connection.Remote, ex.Message);
                    }

                    await RejectStreamAsync(current, currentCts, ex.Code, ex.Message).ConfigureAwait(false);
                    return;
                }
                catch (Exception ex) when (ex is OperationCanceledException || TransportErrors.IsBroken(ex))
                {
                    _cancelReason = ex is OperationCanceledException
                        ? "the server closed the stream (stopping or idle)"
                        : $"the consumer's stream broke ({ex.Message})";
                    return;
                }

                if (!got)
                {
                    _cancelReason = "the consumer closed the stream";
                    return;
                }

                if (_reader.Type == FrameType.Ping)
                {
                    // Heartbeats are answered here, below the handler, whether or not a response is streaming.
                    AnswerPing(_reader.ReadHeartbeat());
                    continue;
                }

                if (current is { IsCompleted: false } && _responseEnded)
                {
                    // The client saw our end (or error) frame and sent its next request before the handler
                    // task finished its bookkeeping: legitimate, just wait for the tail.
                    await current.ConfigureAwait(false);
                }

                if (current is { IsCompleted: false })
                {
                    _server.OnRejected(_connection, ErrorCode.BadRequest);
                    var msg = $"malformed stream: {_reader.Type} frame received while a response is in progress (one request at a time per stream: send the next after End or Error)";
                    Log.BadInput(_logger, _connection.Id, _connection.Remote, msg);
                    await RejectStreamAsync(current, currentCts, ErrorCode.BadRequest, msg).ConfigureAwait(false);
                    return;
                }

                if (_reader.Type != FrameType.Request)
                {
                    _server.OnRejected(_connection, ErrorCode.BadRequest);
                    var msg = $"malformed stream: expected a Request frame, got {_reader.Type}";
                    Log.BadInput(_logger, _connection.Id, _connection.Remote, msg);
                    await TrySendErrorAsync(ErrorCode.BadRequest, msg).ConfigureAwait(false);
                    return;
                }

                currentCts?.Dispose();
                currentCts = CancellationTokenSource.CreateLinkedTokenSource(_server.HardStopToken);
                _requestCts = currentCts;
                var start = await StartAsync(currentCts.Token).ConfigureAwait(false);
                if (start is null)
                {
                    // Rejected with an error frame; a QUIC stream is done, a TCP connection can go on.
                    if (_connection.IsMultiplexed)
                    {
                        return;
                    }

                    continue;
                }

                current = start;
            }
        }
        finally
        {
            if (current is { IsCompleted: false })
            {
                // The consumer went away (or the stream broke): stop the handler promptly.
                await currentCts!.CancelAsync().ConfigureAwait(false);
                try
                {
                    await current.ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                }
            }

            currentCts?.Dispose();
            _writeTimer?.Dispose();
            _writer.Dispose();
            await _reader.DisposeAsync().ConfigureAwait(false);
            _closed.Dispose();
        }
    }

    private async ValueTask<Task?> StartAsync(CancellationToken ct)
    {
        RequestHeader header;
        System.Buffers.ReadOnlySequence<byte> payload;
        try
        {
            header = RequestHeader.Read(_reader.Payload, out payload);
        }
        catch (ProtocolException ex)
        {
            await RejectAsync(ex.Code, ex.Message).ConfigureAwait(false);
            return null;
        }

        var invoker = _server.FindEndpoint(header.EndpointPath);
        if (invoker is null)
        {
            await RejectAsync(ErrorCode.UnknownEndpoint, $"unknown endpoint '{header.EndpointPath}' on instance {_server.InstanceId:x}", header.RequestId).ConfigureAwait(false);
            return null;
        }

        if (_server.IsDraining)
        {
            await RejectAsync(ErrorCode.Unavailable, $"instance {_server.InstanceId:x} is shutting down", header.RequestId).ConfigureAwait(false);
            return null;
        }

        var context = new RequestContext(invoker.Endpoint, header.RequestId, header.Attempt, header.Resume, _connection.Id, _server.InstanceId, ct);
        Func<FrameWriter, Func<CancellationToken, ValueTask>, CancellationToken, Task> run;
        try
        {
            run = invoker.Prepare(payload, context);
        }
        catch (ProtocolException ex)
        {
            await RejectAsync(ex.Code, ex.Message, header.RequestId).ConfigureAwait(false);
            return null;
        }

        if (_server.TryAdmitStream(_connection) is { } refusal)
        {
            // Over a stream limit: "unavailable" before anything else, which routers retry elsewhere for free.
            await TrySendErrorAsync(ErrorCode.Unavailable, refusal).ConfigureAwait(false);
            return null;
        }

        _server.OnRequest(_connection, invoker.Endpoint.Path);
        _busy = true;
        DisarmIdleTimer();
        _responseEnded = false;

        // Started here, so the handler's task (created next) runs with it as Activity.Current.
        var span = ServerTracing.Start(header, invoker.Endpoint.Path, _server.InstanceId);
        return RunHandlerAsync(run, header, invoker.Endpoint.Path, span, ct);
    }

    private void AnswerPing(ulong sequence)
    {
        if (!_server.AnswerHeartbeats)
        {
            return;
        }

        // Not awaited: a consumer that is slow to read must not stop this loop from noticing that it left.
        _ = AnswerPingAsync(sequence);
    }

    private async Task AnswerPingAsync(ulong sequence)
    {
        try
        {
            await _writer.WriteHeartbeatAsync(FrameType.Pong, sequence, _closed.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or InvalidOperationException || TransportErrors.IsBroken(ex))
        {
            // The stream is going away; the read loop handles that.
        }
    }

    private Task RejectAsync(ErrorCode code, string message, string? requestId = null)
    {
        _server.OnRejected(_connection, code);
        Log.Rejected(_logger, _connection.Id, requestId ?? "?", message);
        return TrySendErrorAsync(code, message);
    }

    /// <summary>
    /// Ends the stream after the peer broke the protocol: with an error frame naming the problem, as for any
    /// malformed input. A handler still writing a response is stopped first, since the error frame can only
    /// follow once nothing else writes; if one of its writes was cut short, the stream is reset instead.
    /// </summary>
    private async Task RejectStreamAsync(Task? current, CancellationTokenSource? currentCts, ErrorCode code, string message)
    {
        if (current is { IsCompleted: false })
        {
            _rejecting = true;
            _cancelReason = $"the consumer broke the protocol: {message}";
            await currentCts!.CancelAsync().ConfigureAwait(false);
            try
            {
                await current.ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
            }

            if (_responseCut)
            {
                return;
            }
        }

        await TrySendErrorAsync(code, message).ConfigureAwait(false);
    }

    private async Task RunHandlerAsync(Func<FrameWriter, Func<CancellationToken, ValueTask>, CancellationToken, Task> run, RequestHeader header, string endpoint, System.Diagnostics.Activity? span, CancellationToken ct)
    {
        var aborted = false;
        var outcome = "completed";
        try
        {
            await run(_writer, FlushToPeerAsync, ct).ConfigureAwait(false);
            _writer.WriteEnd();
            _responseEnded = true;
            await FlushToPeerAsync(ct, last: true).ConfigureAwait(false);
        }
        catch (AbortStreamException ex)
        {
            outcome = "cut";
            // What the handler produced before the cut is delivered (as a real crash after a write
            // would); only the end frame is missing.
            try
            {
                await _writer.FlushAsync(ct).ConfigureAwait(false);
            }
            catch (Exception flushError) when (flushError is OperationCanceledException || TransportErrors.IsBroken(flushError))
            {
            }

            Log.StreamCut(_logger, header.RequestId, endpoint, ex.Message);
            _connection.Cut(_stream);
            aborted = true;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            outcome = "cancelled";
            Log.Cancelled(_logger, header.RequestId, endpoint, _cancelReason ?? "the server is stopping");
            if (!_rejecting || _flushInterrupted)
            {
                _connection.Abort(_stream);
                aborted = true;
            }
        }
        catch (PeerWriteException ex)
        {
            outcome = "consumer_gone";
            // Writing to the consumer failed: it is gone. Nothing to tell it; the cause is worth a debug line.
            Log.Cancelled(_logger, header.RequestId, endpoint, "writing to the consumer failed", ex.InnerException);
            _connection.Abort(_stream);
            aborted = true;
        }
        catch (ProtocolException ex)
        {
            outcome = "protocol_error";
            Log.HandlerFailed(_logger, ex, header.RequestId, endpoint);
            await TrySendErrorAsync(ex.Code, ex.Message).ConfigureAwait(false);
        }
        catch (EndpointErrorException ex)
        {
            outcome = "endpoint_error";
            await TrySendErrorAsync(ErrorCode.Handler, ex.Message).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            outcome = "handler_failed";
            Log.HandlerFailed(_logger, ex, header.RequestId, endpoint);
            await TrySendErrorAsync(ErrorCode.Handler, $"endpoint handler failed ({ex.GetType().Name})").ConfigureAwait(false);
        }
        finally
        {
            ServerTracing.End(span, outcome);
            if (!_responseEnded && !aborted && !_rejecting)
            {
                // Backstop: a response must end with End or Error, or the stream is reset, never left open
                // with the consumer waiting. (When rejecting, the read loop sends the Error.)
                _connection.Abort(_stream);
                aborted = true;
            }

            _responseCut = aborted;
            _server.ReleaseStream(_connection);

            _busy = false;
            _writer.Trim();
            ArmIdleTimer();
            if (_server.IsDraining)
            {
                // Finished the last response this session will carry.
                Close();
            }
        }
    }

    private void ArmIdleTimer()
    {
        if (_server.IdleTimeout > TimeSpan.Zero)
        {
            try
            {
                _closed.CancelAfter(_server.IdleTimeout);
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    private void DisarmIdleTimer()
    {
        try
        {
            _closed.CancelAfter(Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// Flushes to the consumer, marking transport failures so they are not mistaken for the handler's own
    /// exceptions (a handler that throws an IOException has failed; a consumer we can't write to is gone).
    /// </summary>
    private ValueTask FlushToPeerAsync(CancellationToken ct) => FlushToPeerAsync(ct, last: false);

    /// <param name="ct">Cancels the flush.</param>
    /// <param name="last">The response is complete after these bytes: the transport ends the stream's write side with them.</param>
    private async ValueTask FlushToPeerAsync(CancellationToken ct, bool last)
    {
        // Cancelled before writing anything leaves the stream in step, so an error frame can still follow.
        ct.ThrowIfCancellationRequested();
        try
        {
            _flushing = true;
            _writeTimer?.Change(_server.Limits.WriteTimeout!.Value, Timeout.InfiniteTimeSpan);
            if (last)
            {
                await _writer.FlushLastAsync(static (s, bytes, c) => s.Connection.WriteLastAsync(s.Stream, bytes, c), (Connection: _connection, Stream: _stream), ct).ConfigureAwait(false);
            }
            else
            {
                await _writer.FlushAsync(ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            _flushInterrupted = true;
            throw;
        }
        catch (Exception ex)
        {
            _flushInterrupted = true;

            // The handler may be suspended between items; it can only be disposed once it stops, so stop it.
            await _requestCts!.CancelAsync().ConfigureAwait(false);
            if (TransportErrors.IsBroken(ex))
            {
                throw new PeerWriteException(ex);
            }

            throw;
        }
        finally
        {
            _flushing = false;
            _writeTimer?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>A flush to the consumer took longer than the write timeout: stop the request, which resets the stream.</summary>
    private void OnWriteTimeout()
    {
        if (!_flushing)
        {
            return;
        }

        var reason = $"the consumer read nothing for {_server.Limits.WriteTimeout!.Value.TotalSeconds:0.###} s (WriteTimeout, DYN_WRITE_TIMEOUT_SECS); request cancelled and stream reset";
        _cancelReason = reason;
        _server.OnLimit(nameof(ServerLimits.WriteTimeout), RejectionLog.PeerOf(_connection.Remote), reason);
        try
        {
            _requestCts?.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private sealed class PeerWriteException(Exception inner) : Exception("writing to the consumer failed", inner);

    private async Task TrySendErrorAsync(ErrorCode code, string message)
    {
        // A peer that does not read gets no longer for an error than for data.
        using var timeout = _server.Limits.WriteTimeout is { } limit ? new CancellationTokenSource(limit, _server.Time) : null;
        try
        {
            _writer.WriteError(code, message);
            _responseEnded = true;
            await _writer.FlushAsync(timeout?.Token ?? CancellationToken.None).ConfigureAwait(false);
            _connection.Complete(_stream);
        }
        catch (OperationCanceledException)
        {
            _connection.Abort(_stream);
        }
        catch (Exception ex) when (TransportErrors.IsBroken(ex) || ex is InvalidOperationException)
        {
        }
    }
}
