using System.Collections.Frozen;

namespace RequestMigration.Discovery.Instances;

/// <summary>
/// Tags of instance records (<c>role=worker,label=worker-a,zone=b</c>) and tag filters: parsing with errors
/// that name the bad part, the documented limits, and matching.
/// </summary>
/// <remarks>
/// Limits: at most <see cref="MaxTags"/> tags; keys of 1..<see cref="MaxKeyLength"/> characters from
/// letters, digits, <c>.</c>, <c>_</c>, <c>-</c> and <c>/</c>, starting with a letter or digit; values of
/// 0..<see cref="MaxValueLength"/> printable characters without <c>,</c> or <c>=</c> (so every tag set can be
/// written in the environment-variable form).
/// </remarks>
public static class InstanceTags
{
    /// <summary>Most tags one instance may carry.</summary>
    public const int MaxTags = 32;

    /// <summary>Longest tag key.</summary>
    public const int MaxKeyLength = 63;

    /// <summary>Longest tag value.</summary>
    public const int MaxValueLength = 255;

    /// <summary>An empty tag set.</summary>
    public static IReadOnlyDictionary<string, string> None { get; } = FrozenDictionary<string, string>.Empty;

    /// <summary>
    /// Parses <c>key=value,key=value</c> (spaces around parts are ignored; empty text is no tags).
    /// </summary>
    /// <param name="text">The text, e.g. the value of <c>DYN_INSTANCE_TAGS</c>.</param>
    /// <param name="source">What the text came from, for the error message.</param>
    /// <exception cref="ArgumentException">A part is not <c>key=value</c>, a key is empty, invalid or repeated, or a limit is exceeded; the message names the part.</exception>
    public static IReadOnlyDictionary<string, string> Parse(string? text, string source)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return None;
        }

        var tags = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var raw in text.Split(','))
        {
            var part = raw.Trim();
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0)
            {
                throw new ArgumentException($"{source}: '{part}' is not key=value (expected e.g. role=worker,label=worker-a)", source);
            }

            var key = part[..eq].Trim();
            var value = part[(eq + 1)..].Trim();
            if (key.Length == 0)
            {
                throw new ArgumentException($"{source}: '{part}' has an empty key (expected e.g. role=worker)", source);
            }

            if (!tags.TryAdd(key, value))
            {
                throw new ArgumentException($"{source}: key '{key}' appears more than once", source);
            }
        }

        Validate(tags, source);

        // Kept in key order, so records and logs always show the tags the same way.
        return new System.Collections.ObjectModel.ReadOnlyDictionary<string, string>(tags);
    }

    /// <summary>Checks a tag set against the limits in the remarks.</summary>
    /// <exception cref="ArgumentException">The first problem found, naming the tag and <paramref name="source"/>.</exception>
    public static void Validate(IReadOnlyDictionary<string, string> tags, string source)
    {
        ArgumentNullException.ThrowIfNull(tags);
        if (tags.Count > MaxTags)
        {
            throw new ArgumentException($"{source}: {tags.Count} tags; at most {MaxTags} are allowed", source);
        }

        foreach (var (key, value) in tags)
        {
            if (key.Length is 0 or > MaxKeyLength || !char.IsAsciiLetterOrDigit(key[0]) || !key.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '/'))
            {
                throw new ArgumentException($"{source}: tag key '{Shorten(key)}' must be 1-{MaxKeyLength} characters of letters, digits, '.', '_', '-' or '/', starting with a letter or digit", source);
            }

            if (value is null || value.Length > MaxValueLength || value.Any(c => char.IsControl(c) || c is ',' or '='))
            {
                throw new ArgumentException($"{source}: the value of tag '{key}' must be at most {MaxValueLength} printable characters without ',' or '='", source);
            }
        }
    }

    /// <summary>Whether <paramref name="tags"/> has every key of <paramref name="filter"/> with the same value (an empty filter matches everything).</summary>
    public static bool Matches(IReadOnlyDictionary<string, string> tags, IReadOnlyDictionary<string, string> filter)
    {
        foreach (var (key, value) in filter)
        {
            if (!tags.TryGetValue(key, out var actual) || !string.Equals(actual, value, StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The <c>key=value,key=value</c> form, keys in order.</summary>
    public static string Format(IReadOnlyDictionary<string, string> tags) =>
        string.Join(',', tags.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => $"{t.Key}={t.Value}"));

    private static string Shorten(string s) => s.Length <= 80 ? s : s[..80] + "…";
}
