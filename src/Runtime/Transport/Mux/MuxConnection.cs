using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace RequestMigration.Transport.Mux;

/// <summary>
/// Many <see cref="MuxStream"/>s over one byte stream (a TLS connection): the client opens streams, the
/// server accepts them. One read loop routes incoming frames to their streams; writes from every stream are
/// serialised, each frame whole. A broken connection breaks exactly its streams. See <see cref="MuxProtocol"/>.
/// </summary>
/// <remarks>
/// Lock order: a stream's own gate may be held while taking <c>_gate</c> (a reader giving back window), never
/// the reverse; the read loop looks a stream up under <c>_gate</c> and calls it after releasing it.
/// </remarks>
internal sealed partial class MuxConnection : IAsyncDisposable
{
    private readonly Stream _transport;
    private readonly TimeProvider _time;
    private readonly bool _isClient;
    private readonly MuxSettings _local;
    private readonly ILogger _logger;
    // The send queue, guarded by _sendGate: whole frames waiting for the writer, in order. A sender that finds no
    // writer running starts one on the thread pool and returns; the writer takes everything queued by then in
    // one go (one TLS record and one syscall for what many streams sent meanwhile) and repeats until the queue
    // is empty. Ids of opening streams are handed out as their frames are queued, so they go out in order.
    // _drained is completed whenever the writer takes a batch, for senders over the byte cap; _written when
    // the queue is empty and nothing is being written, for those that must know their frame is out.
    private readonly Lock _sendGate = new();
    private List<(byte[] Buffer, int Size)> _pending = [];
    private List<(byte[] Buffer, int Size)> _spare = [];
    private long _pendingBytes;
    private bool _writing;
    private TaskCompletionSource? _drained;
    private TaskCompletionSource? _written;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _closed = new();
    private readonly Channel<MuxStream>? _accepted;

    // Guarded by _gate: the open streams, the ids, both connection windows, the credit waiters' signal, the
    // peer's settings and whether new streams are still allowed.
    private readonly Lock _gate = new();
    private readonly Dictionary<uint, MuxStream> _streams = [];
    private MuxSettings _remote;
    private uint _nextLocalId;
    private uint _lastRemoteId;

    // Streams opened here whose first frame has not gone out yet (no id, not in _streams).
    private int _opening;
    private long _sendCredit;
    private long _receiveWindowLeft;
    private long _unackedConsumed;
    private TaskCompletionSource _creditChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _goingAway;
    private string? _failure;

    // When the last stream ended (or the connection started); null while a stream is open.
    private long? _idleSince;
    private Task _readLoop = Task.CompletedTask;

    private MuxConnection(Stream transport, bool isClient, MuxSettings local, string id, ILogger logger, TimeProvider time)
    {
        _time = time;
        _idleSince = time.GetTimestamp();
        _transport = transport;
        _isClient = isClient;
        _local = local;
        _logger = logger;
        Id = id;
        _nextLocalId = 1;
        _receiveWindowLeft = local.ConnectionWindow;
        if (!isClient)
        {
            _accepted = Channel.CreateUnbounded<MuxStream>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        }
    }

    public string Id { get; }

    /// <summary>Streams open now.</summary>
    public int ActiveStreams
    {
        get
        {
            lock (_gate)
            {
                return _streams.Count + _opening;
            }
        }
    }

    /// <summary>Whether a client may open another stream here (alive, not going away, under the peer's limit).</summary>
    public bool CanOpenStream
    {
        get
        {
            lock (_gate)
            {
                return _failure is null && !_goingAway && _streams.Count + _opening < _remote.MaxConcurrentStreams;
            }
        }
    }

    /// <summary>Whether the connection is alive (a client drops it from its pool otherwise).</summary>
    public bool IsAlive
    {
        get
        {
            lock (_gate)
            {
                return _failure is null && !_goingAway;
            }
        }
    }

    /// <summary>How long the connection has had no stream open (zero while one is).</summary>
    public TimeSpan IdleFor
    {
        get
        {
            lock (_gate)
            {
                return _idleSince is { } since ? _time.GetElapsedTime(since) : TimeSpan.Zero;
            }
        }
    }

    /// <summary>Completes when the read loop has ended (the connection is closed or broken).</summary>
    public Task Completion => _readLoop;

    /// <summary>Exchanges settings and starts routing frames. Fails if the peer does not answer within <paramref name="cancellationToken"/>.</summary>
    public static async Task<MuxConnection> StartAsync(Stream transport, bool isClient, MuxSettings local, string id, ILogger logger, CancellationToken cancellationToken, TimeProvider? time = null)
    {
        var connection = new MuxConnection(transport, isClient, local, id, logger, time ?? TimeProvider.System);
        var settings = new byte[12];
        BinaryPrimitives.WriteInt32BigEndian(settings, local.MaxConcurrentStreams);
        BinaryPrimitives.WriteInt32BigEndian(settings.AsSpan(4), local.InitialStreamWindow);
        BinaryPrimitives.WriteInt32BigEndian(settings.AsSpan(8), local.ConnectionWindow);
        connection._readLoop = connection.ReadLoopAsync();
        try
        {
            await connection.SendFrameAsync(MuxFrameType.Settings, MuxFlags.None, 0, settings, cancellationToken).ConfigureAwait(false);
            await connection._ready.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return connection;
    }

    /// <summary>Opens a stream (client side); its first write, or its FIN, opens it at the server.</summary>
    /// <exception cref="IOException">The connection is broken, going away, or full.</exception>
    public MuxStream OpenStream()
    {
        lock (_gate)
        {
            if (_failure is { } failure)
            {
                throw new IOException(failure);
            }

            var open = _streams.Count + _opening;
            if (_goingAway || open >= _remote.MaxConcurrentStreams)
            {
                throw new IOException($"mux connection {Id} takes no new streams ({(_goingAway ? "going away" : $"{open} of {_remote.MaxConcurrentStreams} open")})");
            }

            // The id comes with the first frame (see SendFrameAsync), so ids go out in order.
            var stream = new MuxStream(this, 0, _remote.InitialStreamWindow, _local.InitialStreamWindow, openedHere: true);
            _opening++;
            _idleSince = null;
            return stream;
        }
    }

    /// <summary>The next stream the client opened (server side); null once the connection is finished.</summary>
    public async ValueTask<MuxStream?> AcceptStreamAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _accepted!.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            return null;
        }
    }

    /// <summary>Stops taking new streams and tells the peer (GOAWAY, graceful); open streams carry on.</summary>
    public void GoAway(string reason)
    {
        lock (_gate)
        {
            if (_goingAway || _failure is not null)
            {
                return;
            }

            _goingAway = true;
        }

        _ = SendGoAwayAsync(MuxProtocol.CodeNone, reason);
    }

    /// <summary>Closes the connection at once; every stream fails with <paramref name="reason"/>.</summary>
    public void Abort(string reason) => Fail(reason);

    public async ValueTask DisposeAsync()
    {
        // A graceful close: what the streams sent last (an End, a FIN) is still in the queue, give it a moment.
        await WhenWrittenAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        Fail("the connection was closed");
        try
        {
            await _readLoop.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException)
        {
        }

        _closed.Dispose();
    }

    /// <summary>Sends a stream's bytes, in frames its and the connection's credit allow (waiting for more as needed).</summary>
    internal async ValueTask WriteDataAsync(MuxStream stream, ReadOnlyMemory<byte> data, bool open, bool fin, CancellationToken cancellationToken)
    {
        do
        {
            var want = Math.Min(data.Length, MuxProtocol.MaxFramePayload);
            var n = want == 0 ? 0 : await AcquireCreditAsync(stream, want, cancellationToken).ConfigureAwait(false);
            var last = n == data.Length;
            var flags = (open ? MuxFlags.Open : MuxFlags.None) | (fin && last ? MuxFlags.Fin : MuxFlags.None);
            await SendFrameAsync(MuxFrameType.Data, flags, stream.Id, data[..n], cancellationToken, open ? stream : null).ConfigureAwait(false);
            open = false;
            data = data[n..];
        }
        while (!data.IsEmpty);
    }

    /// <summary>Sends the end of a stream's writes (not awaited: a FIN is tiny and must not block the caller).</summary>
    internal void SendFin(MuxStream stream, bool open) =>
        _ = SendQuietlyAsync(MuxFrameType.Data, (open ? MuxFlags.Open : MuxFlags.None) | MuxFlags.Fin, stream.Id, ReadOnlyMemory<byte>.Empty, open ? stream : null);

    internal void SendStopSending(MuxStream stream)
    {
        var payload = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(payload, MuxProtocol.CodeNone);
        _ = SendQuietlyAsync(MuxFrameType.StopSending, MuxFlags.None, stream.Id, payload);
    }

    internal void SendReset(MuxStream stream, uint code)
    {
        var payload = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(payload, code);
        _ = SendQuietlyAsync(MuxFrameType.Reset, MuxFlags.None, stream.Id, payload);
    }

    /// <summary>
    /// The consumer read (or a closed stream dropped) <paramref name="bytes"/>: once half a window is used up it
    /// is granted back to the peer, for the stream (unless it is gone) and for the connection.
    /// </summary>
    internal void OnConsumed(MuxStream? stream, int bytes, bool streamGone = false)
    {
        if (bytes <= 0)
        {
            return;
        }

        var streamGrant = 0;
        var connectionGrant = 0L;
        lock (_gate)
        {
            if (_failure is not null)
            {
                return;
            }

            _unackedConsumed += bytes;
            if (_unackedConsumed >= _local.ConnectionWindow / 2)
            {
                connectionGrant = _unackedConsumed;
                _receiveWindowLeft += _unackedConsumed;
                _unackedConsumed = 0;
            }

            if (stream is not null && !streamGone && !stream.IsReset)
            {
                stream.UnackedConsumed += bytes;
                if (stream.UnackedConsumed >= _local.InitialStreamWindow / 2 && _streams.ContainsKey(stream.Id))
                {
                    streamGrant = stream.UnackedConsumed;
                    stream.ReceiveWindowLeft += streamGrant;
                    stream.UnackedConsumed = 0;
                }
            }
        }

        if (streamGrant > 0)
        {
            _ = SendWindowAsync(stream!.Id, streamGrant);
        }

        if (connectionGrant > 0)
        {
            _ = SendWindowAsync(0, (int)connectionGrant);
        }
    }

    /// <summary>A stream is done (both sides finished, reset, or disposed): its id is forgotten.</summary>
    internal void OnStreamClosed(MuxStream stream)
    {
        TaskCompletionSource? wake;
        lock (_gate)
        {
            if (stream.Id == 0)
            {
                // Closed before its first frame went out; SendFrameAsync will not open it any more (it is reset).
                _opening--;
            }
            else if (!_streams.Remove(stream.Id))
            {
                return;
            }

            if (_streams.Count == 0)
            {
                _idleSince = _time.GetTimestamp();
            }

            // A freed slot is also a reason for a waiting writer of this stream to look again (it fails now).
            wake = _creditChanged;
            _creditChanged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        wake.TrySetResult();
    }

    private async ValueTask<int> AcquireCreditAsync(MuxStream stream, int want, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task waiting;
            lock (_gate)
            {
                if (_failure is { } failure)
                {
                    throw new IOException(failure);
                }

                if (stream.CannotWrite)
                {
                    throw new IOException(stream.IsReset ? $"mux stream {stream.Id} was reset" : $"the peer stopped reading mux stream {stream.Id}");
                }

                var n = (int)Math.Min(want, Math.Min(stream.SendCredit, _sendCredit));
                if (n > 0)
                {
                    stream.SendCredit -= n;
                    _sendCredit -= n;
                    return n;
                }

                waiting = _creditChanged.Task;
            }

            await waiting.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Queued bytes above which senders wait for the writer (a slow peer holds back its senders, not memory).</summary>
    private const long MaxPendingBytes = 1024 * 1024;

    /// <param name="type">Frame type.</param>
    /// <param name="flags">Frame flags.</param>
    /// <param name="streamId">The stream, or 0 for the connection (ignored when <paramref name="opening"/> is set).</param>
    /// <param name="payload">The payload.</param>
    /// <param name="cancellationToken">Cancels a wait for room in the queue only.</param>
    /// <param name="opening">A stream opened here whose first frame this is: it gets its id as the frame is queued.</param>
    private ValueTask SendFrameAsync(MuxFrameType type, MuxFlags flags, uint streamId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken, MuxStream? opening = null)
    {
        var size = MuxProtocol.HeaderSize + payload.Length;
        var buffer = ArrayPool<byte>.Shared.Rent(size);
        MuxProtocol.WriteHeader(buffer, payload.Length, type, flags, streamId);
        payload.Span.CopyTo(buffer.AsSpan(MuxProtocol.HeaderSize));
        bool write;
        Task? room = null;
        lock (_sendGate)
        {
            if (Volatile.Read(ref _failure) is { } failure)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                throw new IOException(failure);
            }

            if (opening is not null)
            {
                // A stream reset before its first frame: the peer never hears of it (a stream-level error only).
                if (AssignId(opening) is not { } id)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    throw new IOException("mux stream was reset before it was opened");
                }

                BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(6), id);
            }

            _pending.Add((buffer, size));
            _pendingBytes += size;
            write = !_writing;
            _writing = true;
            if (!write && _pendingBytes > MaxPendingBytes)
            {
                room = (_drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
            }
        }

        if (write)
        {
            // One thread-pool hop later rather than inline, so frames queued meanwhile share the write: this
            // stream's next frames (a response's End and FIN follow its data at once) and other streams'. Writing
            // inline cost a send per frame on a connection that was not busy: 36 k -> 59 k short requests/s and
            // 53 -> 33 us CPU per request in a side harness (32 callers, 2 instances, one process).
            ThreadPool.UnsafeQueueUserWorkItem(static c => c.StartDrain(), this, preferLocal: true);
        }

        return room is null ? ValueTask.CompletedTask : new ValueTask(room.WaitAsync(cancellationToken));
    }

    private async void StartDrain()
    {
        try
        {
            await DrainAsync().ConfigureAwait(false);
        }
        catch (IOException)
        {
            // The connection failed (Fail has told its streams).
        }
        catch (Exception ex)
        {
            // Nothing else is expected here; whatever it is, this connection can't write any more.
            Fail($"mux connection {Id} could not write: {ex.Message}");
        }
    }

    /// <summary>
    /// Writes what is queued, batch by batch, until the queue is empty; then the writer role is released. A
    /// failure here breaks the connection.
    /// </summary>
    private async ValueTask DrainAsync()
    {
        while (true)
        {
            List<(byte[] Buffer, int Size)> batch;
            TaskCompletionSource? drained;
            lock (_sendGate)
            {
                if (_pending.Count == 0 || _failure is not null)
                {
                    _writing = false;
                    drained = _drained;
                    _drained = null;
                    drained?.TrySetResult();
                    _written?.TrySetResult();
                    _written = null;
                    return;
                }

                batch = _pending;
                _pending = _spare;
                _pendingBytes = 0;
                drained = _drained;
                _drained = null;
            }

            drained?.TrySetResult();
            try
            {
                await WriteBatchAsync(batch).ConfigureAwait(false);
            }
            finally
            {
                foreach (var (buffer, _) in batch)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }

                batch.Clear();
                lock (_sendGate)
                {
                    _spare = batch;
                }
            }
        }
    }

    /// <summary>Waits (at most <paramref name="limit"/>) until everything queued so far is written, or the connection failed.</summary>
    private async Task WhenWrittenAsync(TimeSpan limit)
    {
        Task written;
        lock (_sendGate)
        {
            if (!_writing || _failure is not null)
            {
                return;
            }

            written = (_written ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }

        try
        {
            // A bound on waiting for a socket, not protocol timing: real time even when the runtime's clock is fake.
            await written.WaitAsync(limit).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A peer that does not read: close anyway.
        }
    }

    private async ValueTask WriteBatchAsync(List<(byte[] Buffer, int Size)> batch)
    {
        byte[]? joined = null;
        try
        {
            ReadOnlyMemory<byte> bytes;
            if (batch.Count == 1)
            {
                bytes = batch[0].Buffer.AsMemory(0, batch[0].Size);
            }
            else
            {
                var total = 0;
                foreach (var (_, size) in batch)
                {
                    total += size;
                }

                joined = ArrayPool<byte>.Shared.Rent(total);
                var offset = 0;
                foreach (var (buffer, size) in batch)
                {
                    buffer.AsSpan(0, size).CopyTo(joined.AsSpan(offset));
                    offset += size;
                }

                bytes = joined.AsMemory(0, total);
            }

            // Not cancellable once started: frames cut in half would break every stream of the connection.
            await _transport.WriteAsync(bytes, CancellationToken.None).ConfigureAwait(false);
            await _transport.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Fail($"writing to mux connection {Id} failed: {ex.Message}");
            throw new IOException($"writing to mux connection {Id} failed: {ex.Message}", ex);
        }
        finally
        {
            if (joined is not null)
            {
                ArrayPool<byte>.Shared.Return(joined);
            }
        }
    }

    /// <summary>
    /// Gives a stream opened here its id and registers it (caller holds the write lock, so ids go out in order);
    /// null when the stream was reset before its first frame went out.
    /// </summary>
    private uint? AssignId(MuxStream stream)
    {
        lock (_gate)
        {
            if (stream.IsReset)
            {
                return null;
            }

            var id = _nextLocalId;
            _nextLocalId += 2;
            stream.AssignId(id);
            _streams[id] = stream;
            _opening--;
            return id;
        }
    }

    private async Task SendQuietlyAsync(MuxFrameType type, MuxFlags flags, uint streamId, ReadOnlyMemory<byte> payload, MuxStream? opening = null)
    {
        try
        {
            await SendFrameAsync(type, flags, streamId, payload, CancellationToken.None, opening).ConfigureAwait(false);
        }
        catch (IOException)
        {
            // The connection is failing; its streams are told so by Fail.
        }
    }

    private Task SendWindowAsync(uint streamId, int increment)
    {
        var payload = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)increment);
        return SendQuietlyAsync(MuxFrameType.Window, MuxFlags.None, streamId, payload);
    }

    private async Task SendGoAwayAsync(uint code, string reason)
    {
        uint last;
        lock (_gate)
        {
            last = _lastRemoteId;
        }

        var text = Encoding.UTF8.GetBytes(reason.Length > 512 ? reason[..512] : reason);
        var payload = new byte[8 + text.Length];
        BinaryPrimitives.WriteUInt32BigEndian(payload, last);
        BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(4), code);
        text.CopyTo(payload, 8);
        await SendQuietlyAsync(MuxFrameType.GoAway, MuxFlags.None, 0, payload).ConfigureAwait(false);
    }

    private async Task ReadLoopAsync()
    {
        var reader = PipeReader.Create(_transport, new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 4096, leaveOpen: true, useZeroByteReads: true));
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync(_closed.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                try
                {
                    while (TryReadFrame(ref buffer, out var header, out var payload))
                    {
                        Dispatch(header, payload);
                    }
                }
                finally
                {
                    reader.AdvanceTo(buffer.Start, buffer.End);
                }

                if (result.IsCompleted)
                {
                    Fail(buffer.IsEmpty ? $"mux connection {Id} was closed by the peer" : $"mux connection {Id} ended inside a frame");
                    return;
                }
            }
        }
        catch (MuxProtocolException ex)
        {
            LogProtocolError(Id, ex.Message);
            await SendGoAwayAsync(ex.Code, ex.Message).ConfigureAwait(false);

            // The connection closes right after this: the peer must get the GOAWAY naming the rule first.
            await WhenWrittenAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
            Fail($"mux protocol error on {Id}: {ex.Message}");
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            Fail($"mux connection {Id} broke: {ex.Message}");
        }
        finally
        {
            await reader.CompleteAsync().ConfigureAwait(false);
        }
    }

    private static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, out (int Length, MuxFrameType Type, MuxFlags Flags, uint StreamId) header, out ReadOnlySequence<byte> payload)
    {
        header = default;
        payload = default;
        if (buffer.Length < MuxProtocol.HeaderSize)
        {
            return false;
        }

        Span<byte> raw = stackalloc byte[MuxProtocol.HeaderSize];
        buffer.Slice(0, MuxProtocol.HeaderSize).CopyTo(raw);
        var length = BinaryPrimitives.ReadUInt32BigEndian(raw);
        if (length > MuxProtocol.MaxFramePayload)
        {
            throw new MuxProtocolException($"frame of {length} bytes exceeds the mux frame limit of {MuxProtocol.MaxFramePayload} bytes");
        }

        if (buffer.Length < MuxProtocol.HeaderSize + length)
        {
            return false;
        }

        header = ((int)length, (MuxFrameType)raw[4], (MuxFlags)raw[5], BinaryPrimitives.ReadUInt32BigEndian(raw[6..]));
        payload = buffer.Slice(MuxProtocol.HeaderSize, length);
        buffer = buffer.Slice(payload.End);
        return true;
    }

    private void Dispatch((int Length, MuxFrameType Type, MuxFlags Flags, uint StreamId) h, ReadOnlySequence<byte> payload)
    {
        if (!_ready.Task.IsCompleted && h.Type != MuxFrameType.Settings)
        {
            throw new MuxProtocolException($"the first frame must be Settings, not {h.Type}");
        }

        switch (h.Type)
        {
            case MuxFrameType.Settings:
                OnSettings(h, payload);
                break;
            case MuxFrameType.Data:
                OnData(h, payload);
                break;
            case MuxFrameType.Window:
                OnWindow(h, payload);
                break;
            case MuxFrameType.Reset:
                if (h.Length != 4)
                {
                    throw new MuxProtocolException($"a Reset frame carries 4 bytes, not {h.Length}");
                }

                Find(h.StreamId)?.OnRemoteReset(ReadUInt32(payload));
                break;
            case MuxFrameType.GoAway:
                OnGoAway(h, payload);
                break;
            case MuxFrameType.StopSending:
                if (h.Length != 4)
                {
                    throw new MuxProtocolException($"a StopSending frame carries 4 bytes, not {h.Length}");
                }

                if (Find(h.StreamId) is { } stopped)
                {
                    stopped.OnStopSending();
                    WakeCreditWaiters();
                }

                break;
            default:
                throw new MuxProtocolException($"unknown frame type 0x{(byte)h.Type:x2}");
        }
    }

    private void OnSettings((int Length, MuxFrameType Type, MuxFlags Flags, uint StreamId) h, ReadOnlySequence<byte> payload)
    {
        if (_ready.Task.IsCompleted)
        {
            throw new MuxProtocolException("Settings sent twice");
        }

        if (h.Length != 12 || h.StreamId != 0)
        {
            throw new MuxProtocolException("a Settings frame carries 12 bytes on stream 0");
        }

        Span<byte> raw = stackalloc byte[12];
        payload.CopyTo(raw);
        var remote = new MuxSettings(BinaryPrimitives.ReadInt32BigEndian(raw), BinaryPrimitives.ReadInt32BigEndian(raw[4..]), BinaryPrimitives.ReadInt32BigEndian(raw[8..]));
        if (remote.MaxConcurrentStreams < 1 || remote.InitialStreamWindow < 1024 || remote.ConnectionWindow < remote.InitialStreamWindow)
        {
            throw new MuxProtocolException($"Settings out of range ({remote})");
        }

        lock (_gate)
        {
            _remote = remote;
            _sendCredit = remote.ConnectionWindow;
        }

        _ready.TrySetResult();
    }

    private void OnData((int Length, MuxFrameType Type, MuxFlags Flags, uint StreamId) h, ReadOnlySequence<byte> payload)
    {
        MuxStream? stream;
        var open = (h.Flags & MuxFlags.Open) != 0;
        var drop = false;
        lock (_gate)
        {
            if (h.Length > _receiveWindowLeft)
            {
                throw new MuxProtocolException($"stream {h.StreamId} sent {h.Length} bytes past the connection's flow-control window", MuxProtocol.CodeFlowControl);
            }

            _receiveWindowLeft -= h.Length;
            if (open)
            {
                stream = Accept(h.StreamId);
                drop = stream is null;
            }
            else if (!_streams.TryGetValue(h.StreamId, out stream))
            {
                if (h.StreamId > (_isClient ? _nextLocalId - 2 : _lastRemoteId) || h.StreamId == 0)
                {
                    throw new MuxProtocolException($"Data for stream {h.StreamId}, which was never opened");
                }

                // A stream already closed here (reset, say): its late bytes are dropped, their window returned.
                drop = true;
            }

            if (stream is not null && h.Length > stream.ReceiveWindowLeft)
            {
                throw new MuxProtocolException($"stream {h.StreamId} sent {h.Length} bytes past its flow-control window of {_local.InitialStreamWindow} bytes", MuxProtocol.CodeFlowControl);
            }

            if (stream is not null)
            {
                stream.ReceiveWindowLeft -= h.Length;
            }
        }

        if (drop || stream is null)
        {
            OnConsumed(null, h.Length, streamGone: true);
            if (open)
            {
                // Opened after our GOAWAY: refused, so the client goes elsewhere without counting a failure.
                var refused = new byte[4];
                BinaryPrimitives.WriteUInt32BigEndian(refused, MuxProtocol.CodeRefused);
                _ = SendQuietlyAsync(MuxFrameType.Reset, MuxFlags.None, h.StreamId, refused);
            }

            return;
        }

        byte[]? copy = null;
        if (h.Length > 0)
        {
            copy = ArrayPool<byte>.Shared.Rent(h.Length);
            payload.CopyTo(copy);
        }

        stream.OnData(copy, h.Length, (h.Flags & MuxFlags.Fin) != 0);
        if (open)
        {
            _accepted!.Writer.TryWrite(stream);
        }
    }

    /// <summary>
    /// A client opened a stream (caller holds <c>_gate</c>); the rules of ids and limits are enforced here.
    /// Null when it is refused because this side is going away.
    /// </summary>
    private MuxStream? Accept(uint id)
    {
        if (_isClient)
        {
            throw new MuxProtocolException($"the server tried to open stream {id}; only clients open streams");
        }

        if (id % 2 == 0 || id <= _lastRemoteId)
        {
            throw new MuxProtocolException($"stream {id} cannot be opened: ids are odd and increase (the last was {_lastRemoteId}); a closed id is never reused");
        }

        if (_streams.Count >= _local.MaxConcurrentStreams)
        {
            throw new MuxProtocolException($"stream {id} opened while {_streams.Count} streams were open; at most {_local.MaxConcurrentStreams} are allowed", MuxProtocol.CodeRefused);
        }

        _lastRemoteId = id;
        if (_goingAway)
        {
            return null;
        }


        var stream = new MuxStream(this, id, _remote.InitialStreamWindow, _local.InitialStreamWindow, openedHere: false);
        _streams[id] = stream;
        _idleSince = null;
        return stream;
    }

    private void OnWindow((int Length, MuxFrameType Type, MuxFlags Flags, uint StreamId) h, ReadOnlySequence<byte> payload)
    {
        if (h.Length != 4)
        {
            throw new MuxProtocolException($"a Window frame carries 4 bytes, not {h.Length}");
        }

        var increment = ReadUInt32(payload);
        if (increment is 0 or > int.MaxValue)
        {
            throw new MuxProtocolException($"Window increment {increment} is out of range");
        }

        TaskCompletionSource wake;
        lock (_gate)
        {
            if (h.StreamId == 0)
            {
                _sendCredit += increment;
            }
            else if (_streams.TryGetValue(h.StreamId, out var stream))
            {
                stream.SendCredit = (int)Math.Min(int.MaxValue, (long)stream.SendCredit + increment);
            }

            wake = _creditChanged;
            _creditChanged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        wake.TrySetResult();
    }

    private void OnGoAway((int Length, MuxFrameType Type, MuxFlags Flags, uint StreamId) h, ReadOnlySequence<byte> payload)
    {
        if (h.Length < 8)
        {
            throw new MuxProtocolException("a GoAway frame carries at least 8 bytes");
        }

        var raw = payload.ToArray();
        var code = BinaryPrimitives.ReadUInt32BigEndian(raw.AsSpan(4));
        var reason = Encoding.UTF8.GetString(raw, 8, raw.Length - 8);
        lock (_gate)
        {
            _goingAway = true;
        }

        if (code != MuxProtocol.CodeNone)
        {
            Fail($"the peer closed mux connection {Id}: {reason}");
        }
    }

    private void WakeCreditWaiters()
    {
        TaskCompletionSource wake;
        lock (_gate)
        {
            wake = _creditChanged;
            _creditChanged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        wake.TrySetResult();
    }

    private MuxStream? Find(uint id)
    {
        lock (_gate)
        {
            return _streams.GetValueOrDefault(id);
        }
    }

    private void Fail(string reason)
    {
        MuxStream[] streams;
        TaskCompletionSource wake;
        lock (_gate)
        {
            if (_failure is not null)
            {
                return;
            }

            _failure = reason;
            streams = [.. _streams.Values];
            _streams.Clear();
            wake = _creditChanged;
        }

        wake.TrySetResult();
        TaskCompletionSource? drained;
        lock (_sendGate)
        {
            // Frames nobody will write: give their buffers back and release senders waiting for room.
            foreach (var (buffer, _) in _pending)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            _pending.Clear();
            _pendingBytes = 0;
            drained = _drained;
            _drained = null;
            _written?.TrySetResult();
            _written = null;
        }

        drained?.TrySetResult();
        _ready.TrySetException(new IOException(reason));
        _accepted?.Writer.TryComplete();
        foreach (var s in streams)
        {
            s.OnConnectionFailed(reason);
        }

        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }

        // Closing the transport ends a read loop blocked in the socket and any write in progress.
        _transport.Dispose();
    }

    private static uint ReadUInt32(ReadOnlySequence<byte> payload)
    {
        Span<byte> raw = stackalloc byte[4];
        payload.Slice(0, 4).CopyTo(raw);
        return BinaryPrimitives.ReadUInt32BigEndian(raw);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "mux connection {ConnectionId}: protocol error ({Rule}); closing it")]
    private partial void LogProtocolError(string connectionId, string rule);
}
