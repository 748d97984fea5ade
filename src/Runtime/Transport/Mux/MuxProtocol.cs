using System.Buffers.Binary;

namespace RequestMigration.Transport.Mux;

/// <summary>
/// The multiplexing layer the TCP transport speaks when both ends negotiate ALPN <c>rm/2</c>: many streams over
/// one TLS connection, with QUIC's stream semantics (open, bytes, finish one direction, reset) and HTTP/2-style
/// credit windows, so the request frames and sessions written for QUIC streams run unchanged over it.
/// </summary>
/// <remarks>
/// Every mux frame is <c>[u32 payload length][u8 type][u8 flags][u32 stream id][payload]</c>, big-endian.
/// <list type="bullet">
/// <item><c>Settings</c> (stream 0, first frame each side sends): <c>[u32 max concurrent streams][u32 initial
/// stream window][u32 connection window]</c>, the limits the sender enforces on what it receives.</item>
/// <item><c>Data</c>: bytes of one stream. Flag <c>Open</c> on the client's first frame of a new stream (ids are
/// odd and increase); flag <c>Fin</c> ends the sender's direction. Counts against both windows.</item>
/// <item><c>Window</c>: <c>[u32 increment]</c>; stream 0 for the connection window.</item>
/// <item><c>Reset</c>: <c>[u32 code]</c>; ends both directions of the stream at once.</item>
/// <item><c>GoAway</c> (stream 0): <c>[u32 last stream id][u32 code][utf-8 reason]</c>; no new streams after it.
/// Code 0 is a graceful close; anything else is a protocol error that also closes the connection.</item>
/// <item><c>StopSending</c>: <c>[u32 code]</c>; the sender will not read the stream any more (it answered and
/// finished, say): the peer's writes fail, but nothing the peer already received is taken back.</item>
/// </list>
/// </remarks>
internal static class MuxProtocol
{
    /// <summary>ALPN of the multiplexed TCP protocol.</summary>
    public const string Alpn = "rm/2";

    public const int HeaderSize = 10;

    /// <summary>Largest payload of one frame either side sends or accepts.</summary>
    public const int MaxFramePayload = 64 * 1024;

    public const uint CodeNone = 0;

    /// <summary>A stream reset because its request was abandoned or failed (either side).</summary>
    public const uint CodeCancel = 1;

    public const uint CodeProtocolError = 2;

    public const uint CodeFlowControl = 3;

    public const uint CodeRefused = 4;

    public static void WriteHeader(Span<byte> header, int length, MuxFrameType type, MuxFlags flags, uint streamId)
    {
        BinaryPrimitives.WriteUInt32BigEndian(header, (uint)length);
        header[4] = (byte)type;
        header[5] = (byte)flags;
        BinaryPrimitives.WriteUInt32BigEndian(header[6..], streamId);
    }
}

internal enum MuxFrameType : byte
{
    Data = 1,
    Window = 2,
    Reset = 3,
    GoAway = 4,
    Settings = 5,
    StopSending = 6,
}

[Flags]
internal enum MuxFlags : byte
{
    None = 0,
    Open = 1,
    Fin = 2,
}

/// <summary>What one side accepts: how many streams at once, and how many unread bytes per stream and in total.</summary>
internal readonly record struct MuxSettings(int MaxConcurrentStreams, int InitialStreamWindow, int ConnectionWindow)
{
    /// <summary>
    /// 256 KiB per stream keeps one fast stream busy on a loopback or LAN round trip; 4 MiB per connection bounds
    /// what a connection can hold unread, whatever its streams do.
    /// </summary>
    public static MuxSettings Default(int maxConcurrentStreams) => new(maxConcurrentStreams, 256 * 1024, 4 * 1024 * 1024);
}

/// <summary>The peer broke the mux protocol; the message names the rule. The connection is closed.</summary>
internal sealed class MuxProtocolException(string message, uint code = MuxProtocol.CodeProtocolError) : IOException(message)
{
    public uint Code { get; } = code;
}
