using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace RequestMigration.Wire;

/// <summary>
/// Buffers frames and writes them to a stream in batches: callers append frames, then
/// <see cref="FlushAsync"/> when they would otherwise wait (so a fast producer sends many frames per
/// write and TLS record, and a slow one sends each frame at once). Not thread-safe: one writer per stream.
/// </summary>
internal sealed class FrameWriter(Stream stream, int maxFrameSize) : IDisposable
{
    /// <summary>Header size: u32 length + u8 type.</summary>
    public const int HeaderSize = 5;

    /// <summary>Past this much buffered data a flush is due regardless of the producer.</summary>
    public const int FlushThreshold = 32 * 1024;

    private readonly PooledBufferWriter _buffer = new();

    // Serialises writes to the stream: buffered frames (FlushAsync) and heartbeat frames (WriteHeartbeatAsync)
    // come from different tasks, and each must reach the stream whole. Uncontended waits allocate nothing.
    private readonly SemaphoreSlim _streamLock = new(1, 1);
    private int _frameStart = -1;

    public int Buffered => _buffer.WrittenCount;

    /// <summary>Starts a frame; write its payload to the returned writer, then call <see cref="EndFrame"/>.</summary>
    public IBufferWriter<byte> BeginFrame(FrameType type)
    {
        _frameStart = _buffer.WrittenCount;
        var span = _buffer.GetSpan(HeaderSize);
        span[4] = (byte)type;
        _buffer.Advance(HeaderSize);
        return _buffer;
    }

    /// <summary>Completes the frame begun last, writing its length.</summary>
    /// <exception cref="ProtocolException">The payload exceeded the maximum frame size; the frame is dropped.</exception>
    public void EndFrame()
    {
        var length = _buffer.WrittenCount - _frameStart - HeaderSize;
        var start = _frameStart;
        _frameStart = -1;
        if (length > maxFrameSize)
        {
            // Drop the frame so the buffer stays well-formed; the caller reports the error instead.
            _buffer.Truncate(start);
            throw new ProtocolException($"frame of {length} bytes exceeds the maximum frame size of {maxFrameSize} bytes", ErrorCode.FrameTooLarge);
        }

        BinaryPrimitives.WriteUInt32BigEndian(_buffer.WrittenSpanMutable.Slice(start, 4), (uint)length);
    }

    /// <summary>Drops the frame begun last (its payload could not be produced).</summary>
    public void CancelFrame()
    {
        if (_frameStart >= 0)
        {
            _buffer.Truncate(_frameStart);
            _frameStart = -1;
        }
    }

    public void WriteEnd()
    {
        BeginFrame(FrameType.End);
        EndFrame();
    }

    /// <summary>Longest error message sent, in UTF-8 bytes; longer ones are cut on a character boundary.</summary>
    public const int MaxErrorMessageBytes = 4096;

    public void WriteError(ErrorCode code, string message)
    {
        var w = BeginFrame(FrameType.Error);
        var span = w.GetSpan(1 + MaxErrorMessageBytes);
        span[0] = (byte)code;

        // Convert stops at whole characters when the room runs out, so a long non-ASCII message (an echoed
        // endpoint path, say) is shortened instead of failing the whole stream.
        Encoding.UTF8.GetEncoder().Convert(message, span.Slice(1, MaxErrorMessageBytes), flush: true, out _, out var used, out _);
        w.Advance(1 + used);
        EndFrame();
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        if (_buffer.WrittenCount == 0)
        {
            return;
        }

        await _streamLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await stream.WriteAsync(_buffer.WrittenMemory, cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _streamLock.Release();
        }

        _buffer.Reset();
    }

    /// <summary>
    /// Flushes the last frames of a response through <paramref name="writeLast"/>, which also ends the stream's
    /// write side (so a transport can send both at once).
    /// </summary>
    public async ValueTask FlushLastAsync<TState>(Func<TState, ReadOnlyMemory<byte>, CancellationToken, ValueTask> writeLast, TState state, CancellationToken cancellationToken)
    {
        await _streamLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await writeLast(state, _buffer.WrittenMemory, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _streamLock.Release();
        }

        _buffer.Reset();
    }

    /// <summary>
    /// Writes a <see cref="FrameType.Ping"/> or <see cref="FrameType.Pong"/> frame now, between whole frames of
    /// whatever else is being written, without touching the buffered output. Safe to call while another task
    /// appends frames and flushes.
    /// </summary>
    public async ValueTask WriteHeartbeatAsync(FrameType type, ulong sequence, CancellationToken cancellationToken)
    {
        var frame = new byte[HeaderSize + 8];
        BinaryPrimitives.WriteUInt32BigEndian(frame, 8);
        frame[4] = (byte)type;
        BinaryPrimitives.WriteUInt64BigEndian(frame.AsSpan(HeaderSize), sequence);
        await _streamLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await stream.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _streamLock.Release();
        }
    }

    /// <summary>Gives the (possibly grown) buffer back to the pool; call when the stream goes idle.</summary>
    public void Trim() => _buffer.Trim();

    public void Dispose() => _buffer.Dispose();
}
