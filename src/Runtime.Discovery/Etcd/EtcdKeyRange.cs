using System.Text;
using Google.Protobuf;

namespace RequestMigration.Discovery.Etcd;

/// <summary>Turns keys and prefixes into etcd's byte ranges.</summary>
internal static class EtcdKeyRange
{
    private static readonly ByteString Zero = ByteString.CopyFrom(0);

    /// <summary>One key.</summary>
    public static ByteString Key(string key) => ByteString.CopyFromUtf8(key);

    /// <summary>
    /// The range <c>[key, rangeEnd)</c> holding every key that starts with <paramref name="prefix"/>: the
    /// end is the prefix with its last byte incremented (trailing 0xff bytes dropped first). An empty
    /// prefix, or one of only 0xff bytes, has no upper bound, which etcd spells as a single zero byte.
    /// </summary>
    public static (ByteString Key, ByteString RangeEnd) Prefix(string prefix)
    {
        if (prefix.Length == 0)
        {
            return (Zero, Zero);
        }

        var start = Encoding.UTF8.GetBytes(prefix);
        var end = (byte[])start.Clone();
        for (var i = end.Length - 1; i >= 0; i--)
        {
            if (end[i] < 0xff)
            {
                end[i]++;
                return (ByteString.CopyFrom(start), ByteString.CopyFrom(end, 0, i + 1));
            }
        }

        return (ByteString.CopyFrom(start), Zero);
    }
}
