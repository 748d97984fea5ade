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
internal sealed class FrameReader(Stream stream, int maxFrameSize) : IAsyncDisposable
{
    // Zero-byte reads: an idle stream waits for data without holding a pooled 16 KiB buffer.
    private readonly PipeReader _reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 16 * 1024, minimumReadSize: 4096, leaveOpen: true, useZeroByteReads: true));
    // Invariant: while _held is true we own a ReadResult (its buffer starts at _buffer.Start for the
    // unparsed part) and have not called AdvanceTo. Frames handed out point into that buffer, so they
    // stay valid until the next ReadAsync needs more bytes and releases it.
    private ReadOnlySequence<byte> _buffer;
    private bool _held;
    private bool _completed;

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
        if (_buffer.Length < FrameWriter.HeaderSize)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[FrameWriter.HeaderSize];
        _buffer.Slice(0, FrameWriter.HeaderSize).CopyTo(header);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header);
        var type = header[4];
        if (type is < (byte)FrameType.Request or > (byte)FrameType.End)
        {
            throw new ProtocolException($"malformed frame: unknown frame type 0x{type:x2}");
        }

        if (length > (uint)maxFrameSize)
        {
            throw new ProtocolException($"frame of {length} bytes exceeds the maximum frame size of {maxFrameSize} bytes", ErrorCode.FrameTooLarge);
        }

        if (_buffer.Length < FrameWriter.HeaderSize + length)
        {
            return false;
        }

        Type = (FrameType)type;
        Payload = _buffer.Slice(FrameWriter.HeaderSize, length);
        _buffer = _buffer.Slice(Payload.End);
        return true;
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
        if (_held)
        {
            _reader.AdvanceTo(_buffer.End);
            _held = false;
        }

        await _reader.CompleteAsync().ConfigureAwait(false);
    }
}
