using System.Buffers.Binary;

namespace RequestMigration.Wire;

/// <summary>
/// Content of the request header's resume field for a migrated request: <c>[u64 items delivered, big-endian]</c>.
/// Anything shorter reads as 0, so older or foreign clients that send other bytes are treated as first attempts.
/// </summary>
internal static class ResumeToken
{
    public const int Size = 8;

    public static byte[] Create(long itemsDelivered)
    {
        var bytes = new byte[Size];
        BinaryPrimitives.WriteInt64BigEndian(bytes, itemsDelivered);
        return bytes;
    }

    public static long ReadItemsDelivered(ReadOnlySpan<byte> resume) =>
        resume.Length >= Size ? Math.Max(0, BinaryPrimitives.ReadInt64BigEndian(resume)) : 0;
}
