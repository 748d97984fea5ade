using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;

namespace RequestMigration.Wire;

/// <summary>
/// Reads frames from a stream through a <see cref="PipeReader"/> (pooled buffers, no per-frame copies).
/// After <see cref="ReadAsync"/> returns true, <see cref="Type"/> and <see cref="Payload"/> are valid
/// until the next call. Not thread-safe: one reader per stream.
/// </summary>
/// <param name="stream">The stream to read; left open on dispose.</param>
/// <param name="maxFrameSize">Largest payload accepted.</param>
/// <param name="budget">Shared by a server's connections: bytes held for incomplete frames are charged to it (null: not counted).</param>
/// <param name="pool">Where the pipe rents its buffers (null: the shared pool).</param>
internal sealed class FrameReader(Stream stream, int maxFrameSize, BufferBudget? budget = null, MemoryPool<byte>? pool = null) : IAsyncDisposable
{
    /// <summary>Incomplete frames up to this size (header included) are not charged to the budget: they fit in the first pipe buffer.</summary>
    public const int UncountedFrameSize = ReadBufferSize;

    private const int ReadBufferSize = 16 * 1024;

    // Zero-byte reads: an idle stream waits for data without holding a pooled 16 KiB buffer.
    private readonly PipeReader _reader = PipeReader.Create(stream, new StreamPipeReaderOptions(pool, bufferSize: ReadBufferSize, minimumReadSize: 4096, leaveOpen: true, useZeroByteReads: true));
    // Invariant: while _held is true we own a ReadResult (its buffer starts at _buffer.Start for the
    // unparsed part) and have not called AdvanceTo. Frames handed out point into that buffer, so they
    // stay valid until the next ReadAsync needs more bytes and releases it.
    private ReadOnlySequence<byte> _buffer;
    private bool _held;
    private bool _completed;
    // Size (header included) of the frame at the start of _buffer when TryParse found it incomplete; 0 otherwise.
    private long _pendingFrame;
    // Bytes of the incomplete frame now charged to the budget; given back when it completes or on dispose.
    private long _charged;

    public FrameType Type { get; private set; }

    public ReadOnlySequence<byte> Payload { get; private set; }

    /// <summary>Reads the next frame; false on a clean end of stream between frames.</summary>
    /// <exception cref="ProtocolException">Unknown type, oversized frame, or the stream ended inside a frame.</exception>
    public ValueTask<bool> ReadAsync(CancellationToken cancellationToken) =>
        _held && TryParse() ? new ValueTask<bool>(true) : ReadSlowAsync(cancellationToken);

    private async ValueTask<bool> ReadSlowAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            if (_held)
            {
                if (TryParse())
                {
                    // Complete: it is handed out and released by the next read, no longer "arriving".
                    Uncharge();
                    return true;
                }

                if (_completed)
                {
                    if (_buffer.IsEmpty)
                    {
                        return false;
                    }

                    throw Truncated();
                }

                Charge();
                _reader.AdvanceTo(_buffer.Start, _buffer.End);
                _held = false;
            }

            var result = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            _buffer = result.Buffer;
            _held = true;
            _completed = result.IsCompleted || result.IsCanceled;
        }
    }

    private bool TryParse()
    {
        _pendingFrame = 0;
        if (_buffer.Length < FrameWriter.HeaderSize)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[FrameWriter.HeaderSize];
        _buffer.Slice(0, FrameWriter.HeaderSize).CopyTo(header);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header);
        var type = header[4];
        if (type is < (byte)FrameType.Request or > (byte)FrameType.Pong)
        {
            throw new ProtocolException($"malformed frame: unknown frame type 0x{type:x2}");
        }

        if (length > (uint)maxFrameSize)
        {
            throw new ProtocolException($"frame of {length} bytes exceeds the maximum frame size of {maxFrameSize} bytes", ErrorCode.FrameTooLarge);
        }

        if (_buffer.Length < FrameWriter.HeaderSize + length)
        {
            _pendingFrame = FrameWriter.HeaderSize + length;
            return false;
        }

        Type = (FrameType)type;
        Payload = _buffer.Slice(FrameWriter.HeaderSize, length);
        _buffer = _buffer.Slice(Payload.End);
        return true;
    }

    /// <summary>Charges the bytes now held for the incomplete frame at the start of the buffer to the budget.</summary>
    /// <exception cref="ProtocolException">The budget cannot take them (<see cref="ErrorCode.Unavailable"/>).</exception>
    private void Charge()
    {
        if (budget is null || _pendingFrame <= UncountedFrameSize)
        {
            return;
        }

        // The header is not counted, so a budget of MaxFrameSize always fits one largest frame.
        var held = _buffer.Length - FrameWriter.HeaderSize;
        if (held > _charged)
        {
            if (!budget.TryAdd(held - _charged))
            {
                throw new ProtocolException(
                    $"server busy: a request frame of {_pendingFrame - FrameWriter.HeaderSize} bytes, {held} of them received, would take the bytes held for incomplete frames "
                    + $"over the server's limit of {budget.Limit} (MaxBufferedRequestBytes, DYN_MAX_BUFFERED_BYTES); {budget.InUse} are held now",
                    ErrorCode.Unavailable,
                    nameof(Serving.ServerLimits.MaxBufferedRequestBytes));
            }

            _charged = held;
        }
    }

    private void Uncharge()
    {
        if (_charged > 0)
        {
            budget!.Release(_charged);
            _charged = 0;
        }
    }

    private ProtocolException Truncated()
    {
        if (_buffer.Length >= FrameWriter.HeaderSize)
        {
            Span<byte> header = stackalloc byte[4];
            _buffer.Slice(0, 4).CopyTo(header);
            return new ProtocolException($"truncated frame: header announced {BinaryPrimitives.ReadUInt32BigEndian(header)} bytes, stream ended after {_buffer.Length - FrameWriter.HeaderSize}");
        }

        return new ProtocolException($"truncated frame: stream ended after {_buffer.Length} of {FrameWriter.HeaderSize} header bytes");
    }

    /// <summary>The sequence of a <see cref="FrameType.Ping"/> or <see cref="FrameType.Pong"/> frame.</summary>
    /// <exception cref="ProtocolException">The payload is not 8 bytes.</exception>
    public ulong ReadHeartbeat()
    {
        if (Payload.Length != 8)
        {
            throw new ProtocolException($"malformed frame: a {Type} frame carries 8 bytes, not {Payload.Length}");
        }

        Span<byte> value = stackalloc byte[8];
        Payload.CopyTo(value);
        return BinaryPrimitives.ReadUInt64BigEndian(value);
    }

    /// <summary>Decodes the payload of an <see cref="FrameType.Error"/> frame.</summary>
    public (ErrorCode Code, string Message) ReadError()
    {
        if (Payload.IsEmpty)
        {
            return (ErrorCode.BadRequest, "error frame without code");
        }

        var first = Payload.FirstSpan[0];
        var text = Encoding.UTF8.GetString(Payload.Slice(1));
        return ((ErrorCode)first, text);
    }

    public async ValueTask DisposeAsync()
    {
        Uncharge();
        if (_held)
        {
            _reader.AdvanceTo(_buffer.End);
            _held = false;
        }

        await _reader.CompleteAsync().ConfigureAwait(false);
    }
}

/// <summary>
/// A limit on bytes held, shared by the frame readers of one server (<see cref="Serving.ServerLimits.MaxBufferedRequestBytes"/>).
/// Thread-safe.
/// </summary>
/// <param name="limit">Most bytes held at once; 0 means no limit (only counted).</param>
internal sealed class BufferBudget(long limit)
{
    private long _inUse;

    public long Limit => limit;

    /// <summary>Bytes charged now.</summary>
    public long InUse => Volatile.Read(ref _inUse);

    /// <summary>Charges <paramref name="bytes"/> unless that would go over the limit.</summary>
    public bool TryAdd(long bytes)
    {
        var current = Volatile.Read(ref _inUse);
        while (true)
        {
            var next = current + bytes;
            if (limit > 0 && next > limit)
            {
                return false;
            }

            var seen = Interlocked.CompareExchange(ref _inUse, next, current);
            if (seen == current)
            {
                return true;
            }

            current = seen;
        }
    }

    public void Release(long bytes) => Interlocked.Add(ref _inUse, -bytes);
}
