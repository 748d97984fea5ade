using System.Buffers;

namespace RequestMigration.Transport.Mux;

/// <summary>
/// One stream of a <see cref="MuxConnection"/>, with the semantics of a QUIC stream: bytes in both directions,
/// <see cref="CompleteWrites"/> ends ours after everything written (FIN), <see cref="Abort"/> ends both at once
/// (RESET). Reads block only this stream; a slow reader holds back only its own sender, through its window.
/// One reader and one writer at a time (as with any <see cref="Stream"/>); <see cref="Abort"/> and
/// <see cref="CompleteWrites"/> may come from anywhere.
/// </summary>
internal sealed class MuxStream : Stream
{
    private readonly MuxConnection _connection;
    private readonly Lock _gate = new();

    // Receive side, guarded by _gate: unread bytes as rented arrays (the head one read from _headOffset on),
    // the peer's FIN, why reads fail (reset, connection lost, disposed), and the reader waiting for any of it.
    private readonly Queue<(byte[] Array, int Count)> _chunks = new();
    private int _headOffset;
    private int _buffered;
    private bool _remoteFinished;
    private string? _failure;
    private bool _refused;
    private TaskCompletionSource? _waiter;

    // Send side. _openSent is touched only by the single writer; _finSent and _reset by anyone (0/1).
    private bool _openSent;
    private int _finSent;
    private int _reset;

    // 1 once the connection has been told the stream is done (it then forgets the stream id).
    private int _retired;

    // 1 once the peer said it will not read any more: our writes fail instead of waiting for credit.
    private int _writeStopped;

    internal MuxStream(MuxConnection connection, uint id, int sendCredit, int receiveWindow, bool openedHere)
    {
        _connection = connection;
        Id = id;
        SendCredit = sendCredit;
        ReceiveWindowLeft = receiveWindow;
        _openSent = !openedHere;
    }

    /// <summary>
    /// The stream id; 0 for a stream opened here until its first frame goes out. Ids are handed out under the
    /// connection's write lock, so they reach the wire in increasing order however many streams open at once.
    /// </summary>
    public uint Id { get; private set; }

    internal void AssignId(uint id) => Id = id;

    /// <summary>Bytes we may still send (guarded by the connection's gate).</summary>
    internal int SendCredit { get; set; }

    /// <summary>Bytes the peer may still send before we grant more (guarded by the connection's gate).</summary>
    internal int ReceiveWindowLeft { get; set; }

    /// <summary>Bytes read by the consumer not yet granted back to the peer (guarded by the connection's gate).</summary>
    internal int UnackedConsumed { get; set; }

    internal bool IsReset => Volatile.Read(ref _reset) != 0;

    /// <summary>Writing is pointless: the stream was reset, or the peer stopped reading it.</summary>
    internal bool CannotWrite => IsReset || Volatile.Read(ref _writeStopped) != 0;

    internal bool RemoteFinished
    {
        get
        {
            lock (_gate)
            {
                return _remoteFinished;
            }
        }
    }

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Task waiting;
            var read = 0;
            lock (_gate)
            {
                if (_chunks.Count > 0)
                {
                    // A zero-byte read only waits for data (PipeReader's way of not holding a buffer while idle).
                    if (buffer.IsEmpty)
                    {
                        return 0;
                    }

                    while (read < buffer.Length && _chunks.TryPeek(out var head))
                    {
                        var n = Math.Min(head.Count - _headOffset, buffer.Length - read);
                        head.Array.AsSpan(_headOffset, n).CopyTo(buffer.Span[read..]);
                        read += n;
                        _headOffset += n;
                        if (_headOffset == head.Count)
                        {
                            _chunks.Dequeue();
                            ArrayPool<byte>.Shared.Return(head.Array);
                            _headOffset = 0;
                        }
                    }

                    _buffered -= read;
                    waiting = Task.CompletedTask;
                }
                else if (_failure is { } failure)
                {
                    throw _refused ? new StreamRefusedException(failure) : new IOException(failure);
                }

                else if (_remoteFinished)
                {
                    return 0;
                }
                else
                {
                    _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    waiting = _waiter.Task;
                }
            }

            if (read > 0)
            {
                // Outside the lock: granting window back may write to the connection.
                _connection.OnConsumed(this, read);
                return read;
            }

            await waiting.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (Volatile.Read(ref _finSent) != 0)
        {
            throw new InvalidOperationException($"mux stream {Id}: writing after the write side was completed");
        }

        var open = !_openSent;
        _openSent = true;
        await _connection.WriteDataAsync(this, buffer, open, fin: false, cancellationToken).ConfigureAwait(false);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <summary>Writes go out as they are written; there is nothing to flush.</summary>
    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override void Flush()
    {
    }

    /// <summary>Ends our direction after everything written (FIN): the peer reads all of it, then the end.</summary>
    public void CompleteWrites()
    {
        if (Interlocked.Exchange(ref _finSent, 1) != 0 || IsReset)
        {
            return;
        }

        var open = !_openSent;
        _openSent = true;
        _connection.SendFin(this, open);
        RetireIfDone();
    }

    /// <summary>Ends both directions at once (RESET): the peer's reads fail; unsent and unread bytes are dropped.</summary>
    public void Abort(uint code = MuxProtocol.CodeCancel)
    {
        if (Interlocked.Exchange(ref _reset, 1) != 0)
        {
            return;
        }

        var wasRetired = Volatile.Read(ref _retired) != 0;
        FailReads("the stream was reset by this side");

        // A stream whose first frame never went out (id 0) is unknown to the peer: nothing to reset there.
        if (!wasRetired && Id != 0)
        {
            _connection.SendReset(this, code);
        }
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>Bytes arrived for this stream; ownership of <paramref name="array"/> passes to the stream.</summary>
    internal void OnData(byte[]? array, int count, bool fin)
    {
        TaskCompletionSource? wake;
        var dropped = false;
        lock (_gate)
        {
            if (_failure is not null)
            {
                // Reset or disposed here: nobody will read it.
                dropped = true;
                wake = null;
            }
            else
            {
                if (array is not null)
                {
                    _chunks.Enqueue((array, count));
                    _buffered += count;
                    array = null;
                }

                _remoteFinished |= fin;
                wake = _waiter;
                _waiter = null;
            }
        }

        if (dropped)
        {
            if (array is not null)
            {
                ArrayPool<byte>.Shared.Return(array);
                _connection.OnConsumed(this, count, streamGone: true);
            }

            return;
        }

        wake?.TrySetResult();
        if (fin)
        {
            RetireIfDone();
        }
    }

    /// <summary>The peer will not read this stream any more: writes fail from now on; reading goes on.</summary>
    internal void OnStopSending() => Interlocked.Exchange(ref _writeStopped, 1);

    /// <summary>The peer reset the stream: reads fail from now on.</summary>
    internal void OnRemoteReset(uint code)
    {
        Interlocked.Exchange(ref _reset, 1);
        if (code == MuxProtocol.CodeRefused)
        {
            lock (_gate)
            {
                _refused = _failure is null;
            }

            FailReads("the peer refused the stream (it is going away or full)");
            return;
        }

        FailReads($"the stream was reset by the peer (code {code})");
    }

    /// <summary>
    /// The connection is gone: writes fail from now on; reads return what already arrived, then fail with
    /// <paramref name="reason"/> (or end normally, if the peer had finished: nothing was lost).
    /// </summary>
    internal void OnConnectionFailed(string reason)
    {
        Interlocked.Exchange(ref _reset, 1);
        FailReads(reason, keepReceived: true);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            // Dropped before our side finished: the peer must hear that the stream is abandoned. Once our
            // FIN is out, what we wrote stands (as a QUIC stream's does): a reset would make the peer drop
            // bytes it has not read yet, such as the response's last frames. We only stop reading, and say
            // so if the peer may still be writing, or it could wait for window forever.
            if (Volatile.Read(ref _finSent) == 0)
            {
                Abort();
            }
            else if (!RemoteFinished && !IsReset && Volatile.Read(ref _retired) == 0)
            {
                _connection.SendStopSending(this);
            }

            FailReads("the stream was disposed");
        }

        base.Dispose(disposing);
    }

    public override ValueTask DisposeAsync()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    private void FailReads(string reason, bool keepReceived = false)
    {
        TaskCompletionSource? wake;
        int dropped;
        lock (_gate)
        {
            if (keepReceived)
            {
                // Bytes that arrived are the peer's to give: a close right after its last frames (a server
                // draining) must not take them back. A finished stream is simply complete.
                if (!_remoteFinished)
                {
                    _failure ??= reason;
                }

                wake = _waiter;
                _waiter = null;
                dropped = 0;
            }
            else
            {
                _failure ??= reason;
                dropped = DropReceived();
                wake = _waiter;
                _waiter = null;
            }
        }

        if (dropped > 0)
        {
            // Bytes nobody will read: give the connection window back so other streams are not starved.
            _connection.OnConsumed(this, dropped, streamGone: true);
        }

        wake?.TrySetResult();
        Retire();
    }

    private int DropReceived()
    {
        var dropped = _buffered;
        _buffered = 0;
        _headOffset = 0;
        while (_chunks.TryDequeue(out var chunk))
        {
            ArrayPool<byte>.Shared.Return(chunk.Array);
        }

        return dropped;
    }

    private void RetireIfDone()
    {
        if (Volatile.Read(ref _finSent) != 0 && RemoteFinished)
        {
            Retire();
        }
    }

    private void Retire()
    {
        if (Interlocked.Exchange(ref _retired, 1) == 0)
        {
            _connection.OnStreamClosed(this);
        }
    }
}
