using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace RequestMigration.Wire;

/// <summary>
/// The header at the start of a <see cref="FrameType.Request"/> payload:
/// <c>[u8 version][u16 len][endpoint path][u16 len][request id][u16 attempt][u32 len][resume bytes]</c>, and in
/// version 2 then <c>[u16 len][traceparent][u16 len][tracestate]</c> (W3C trace context, ASCII); then the
/// request payload. Version 1 is written when there is no trace context, so servers that predate tracing
/// keep working with routers that do not trace.
/// </summary>
/// <param name="EndpointPath">The endpoint asked for, <c>ns/component/endpoint</c>.</param>
/// <param name="RequestId">Stable across attempts of one request, for logs and for de-duplication.</param>
/// <param name="Attempt">1 for the first attempt, then 2, 3, …</param>
/// <param name="Resume">Resuming a migrated request (what the consumer already received); empty otherwise.</param>
/// <param name="TraceParent">The W3C <c>traceparent</c> of the attempt's span, or null.</param>
/// <param name="TraceState">The W3C <c>tracestate</c> that goes with it, or null.</param>
internal sealed record RequestHeader(string EndpointPath, string RequestId, int Attempt, ReadOnlyMemory<byte> Resume, string? TraceParent = null, string? TraceState = null)
{
    /// <summary>The newest version this build writes (it reads 1 and 2).</summary>
    public const byte Version = 2;

    private const int MaxTraceText = 1024;

    private const int MaxText = ushort.MaxValue;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Writes the header to <paramref name="output"/>.</summary>
    public void Write(IBufferWriter<byte> output)
    {
        var pathLen = Encoding.UTF8.GetByteCount(EndpointPath);
        var idLen = Encoding.UTF8.GetByteCount(RequestId);
        if (pathLen > MaxText || idLen > MaxText)
        {
            throw new ArgumentException("endpoint path and request id must each be at most 65535 UTF-8 bytes");
        }

        var traced = TraceParent is { Length: > 0 };
        var parentLen = traced ? Encoding.ASCII.GetByteCount(TraceParent!) : 0;
        var stateLen = traced && TraceState is { } ts ? Encoding.ASCII.GetByteCount(ts) : 0;
        if (parentLen > MaxTraceText || stateLen > MaxTraceText)
        {
            // Trace context is best effort: an oversized one is dropped rather than failing the request.
            traced = false;
            parentLen = stateLen = 0;
        }

        var size = 1 + 2 + pathLen + 2 + idLen + 2 + 4 + Resume.Length + (traced ? 4 + parentLen + stateLen : 0);
        var span = output.GetSpan(size);
        span[0] = traced ? Version : (byte)1;
        var o = 1;
        BinaryPrimitives.WriteUInt16BigEndian(span[o..], (ushort)pathLen);
        o += 2;
        o += Encoding.UTF8.GetBytes(EndpointPath, span[o..]);
        BinaryPrimitives.WriteUInt16BigEndian(span[o..], (ushort)idLen);
        o += 2;
        o += Encoding.UTF8.GetBytes(RequestId, span[o..]);
        BinaryPrimitives.WriteUInt16BigEndian(span[o..], (ushort)Math.Clamp(Attempt, 0, ushort.MaxValue));
        o += 2;
        BinaryPrimitives.WriteUInt32BigEndian(span[o..], (uint)Resume.Length);
        o += 4;
        Resume.Span.CopyTo(span[o..]);
        o += Resume.Length;
        if (traced)
        {
            BinaryPrimitives.WriteUInt16BigEndian(span[o..], (ushort)parentLen);
            o += 2;
            o += Encoding.ASCII.GetBytes(TraceParent!, span[o..]);
            BinaryPrimitives.WriteUInt16BigEndian(span[o..], (ushort)stateLen);
            o += 2;
            if (stateLen > 0)
            {
                Encoding.ASCII.GetBytes(TraceState!, span[o..]);
            }
        }

        output.Advance(size);
    }

    /// <summary>Reads a header; <paramref name="payload"/> receives what follows it.</summary>
    /// <exception cref="ProtocolException">The header is malformed; the message says how.</exception>
    public static RequestHeader Read(ReadOnlySequence<byte> frame, out ReadOnlySequence<byte> payload)
    {
        var reader = new SequenceReader<byte>(frame);
        if (!reader.TryRead(out var version))
        {
            throw new ProtocolException("request header: empty request frame");
        }

        if (version is not (1 or Version))
        {
            throw new ProtocolException($"request header: unsupported version {version} (expected 1 or {Version})");
        }

        var path = ReadText(ref reader, "endpoint path");
        var id = ReadText(ref reader, "request id");
        if (!reader.TryReadBigEndian(out short attempt))
        {
            throw new ProtocolException("request header: truncated before the attempt number");
        }

        if (!reader.TryReadBigEndian(out int resumeLen) || resumeLen < 0 || resumeLen > reader.Remaining)
        {
            throw new ProtocolException("request header: resume field length is missing or larger than the frame");
        }

        var resume = frame.Slice(reader.Position, resumeLen).ToArray();
        reader.Advance(resumeLen);
        string? traceParent = null;
        string? traceState = null;
        if (version == 2)
        {
            traceParent = ReadText(ref reader, "traceparent");
            traceState = ReadText(ref reader, "tracestate");
            if (traceParent.Length > MaxTraceText || traceState.Length > MaxTraceText)
            {
                throw new ProtocolException($"request header: trace context longer than {MaxTraceText} bytes");
            }
        }

        payload = frame.Slice(reader.Position);
        return new RequestHeader(path, id, (ushort)attempt, resume, traceParent is { Length: > 0 } ? traceParent : null, traceState is { Length: > 0 } ? traceState : null);
    }

    private static string ReadText(ref SequenceReader<byte> reader, string what)
    {
        if (!reader.TryReadBigEndian(out short rawLen))
        {
            throw new ProtocolException($"request header: truncated before the {what} length");
        }

        var len = (ushort)rawLen;
        if (len > reader.Remaining)
        {
            throw new ProtocolException($"request header: {what} length {len} is larger than the frame");
        }

        var slice = reader.UnreadSequence.Slice(0, len);
        reader.Advance(len);
        try
        {
            return StrictUtf8.GetString(slice);
        }
        catch (DecoderFallbackException)
        {
            throw new ProtocolException($"request header: {what} is not valid UTF-8");
        }
    }
}
