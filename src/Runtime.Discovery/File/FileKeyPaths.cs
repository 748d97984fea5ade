using System.Text;

namespace RequestMigration.Discovery.File;

/// <summary>
/// Maps keys to files: the first two segments of a key are directories (the bucket, e.g.
/// <c>v1/instances</c>), the rest of the key is one percent-encoded file name.
/// </summary>
internal static class FileKeyPaths
{
    public const string TempPrefix = ".tmp-";

    public static string ToPath(string root, string key)
    {
        var parts = key.Split('/');
        var dirCount = Math.Min(2, parts.Length - 1);
        var path = root;
        for (var i = 0; i < dirCount; i++)
        {
            path = Path.Combine(path, Encode(parts[i]));
        }

        return Path.Combine(path, Encode(string.Join('/', parts, dirCount, parts.Length - dirCount)));
    }

    /// <summary>The directory under which every key with this prefix lives.</summary>
    public static string SearchRoot(string root, string prefix)
    {
        var parts = prefix.Split('/');
        var complete = Math.Min(2, parts.Length - 1);
        var path = root;
        for (var i = 0; i < complete; i++)
        {
            path = Path.Combine(path, Encode(parts[i]));
        }

        return path;
    }

    public static bool TryToKey(string root, string path, out string key)
    {
        key = string.Empty;
        var rel = Path.GetRelativePath(root, path);
        var parts = rel.Split(Path.DirectorySeparatorChar);
        if (parts.Length > 3 || parts[^1].StartsWith('.'))
        {
            return false;
        }

        var sb = new StringBuilder();
        for (var i = 0; i < parts.Length; i++)
        {
            if (i > 0)
            {
                sb.Append('/');
            }

            try
            {
                sb.Append(Uri.UnescapeDataString(parts[i]));
            }
            catch (UriFormatException)
            {
                return false;
            }
        }

        key = sb.ToString();
        return key.Length > 0;
    }

    private static string Encode(string segment)
    {
        var s = Uri.EscapeDataString(segment);

        // A leading dot would hide the file and clash with temp files.
        return s.StartsWith('.') ? "%2E" + s[1..] : s;
    }
}
