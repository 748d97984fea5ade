using System.Security.Cryptography;

namespace RequestMigration.Routing;

/// <summary>
/// Request ids: 32 lowercase hex digits, as <c>Guid.ToString("N")</c> gives, unique across processes without a
/// system call per request (<see cref="Guid.NewGuid"/> reads the kernel's random source every time).
/// </summary>
/// <remarks>
/// The first 16 digits are random per process, the last 16 a counter: two processes collide only if they draw
/// the same 64-bit prefix. Ids are for logs and traces, not secrets, so being predictable within a process is fine.
/// </remarks>
internal static class RequestIds
{
    private static readonly ulong Prefix = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
    private static long _counter;

    public static string Next()
    {
        var n = (ulong)Interlocked.Increment(ref _counter);
        return string.Create(32, n, static (span, n) =>
        {
            Prefix.TryFormat(span, out _, "x16", System.Globalization.CultureInfo.InvariantCulture);
            n.TryFormat(span[16..], out _, "x16", System.Globalization.CultureInfo.InvariantCulture);
        });
    }
}
