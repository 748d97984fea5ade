using System.Globalization;
using System.Text;

namespace RequestMigration.Diagnostics;

/// <summary>
/// Makes a value that a peer controls (request id, endpoint path, error text from the other side) safe to
/// put in a log line. A raw newline lets a peer forge a line that looks exactly like a real entry, escape
/// sequences reach terminals that display the log, and a 65 KB path makes a 65 KB line; so control
/// characters are escaped and the length is capped. Handlers should use it too for what they log of a request.
/// </summary>
public static class LogValues
{
    /// <summary>The default cap, in characters of the logged text, for one peer-supplied value.</summary>
    public const int DefaultMaxLength = 256;

    /// <summary>
    /// Returns <paramref name="value"/> with control characters escaped (<c>\n</c>, <c>\r</c>, <c>\t</c>,
    /// others as <c>\uXXXX</c>, e.g. ESC as <c>\u001b</c>; also line/paragraph separators, bidirectional
    /// overrides and lone surrogates), cut to <paramref name="maxLength"/> characters with
    /// <c>… (N chars)</c> appended when longer, N being the original length. Values needing neither are
    /// returned as they are, without allocating. Backslashes are kept as they are.
    /// </summary>
    /// <param name="value">The peer-supplied text; null is logged as <c>(null)</c>.</param>
    /// <param name="maxLength">Most characters of escaped text kept (at least 1).</param>
    public static string Sanitize(string? value, int maxLength = DefaultMaxLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        if (value is null)
        {
            return "(null)";
        }

        if (value.Length <= maxLength && IsClean(value))
        {
            return value;
        }

        var sb = new StringBuilder(Math.Min(value.Length, maxLength) + 24);
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                // A pair is kept whole or dropped whole: half of one would be a lone surrogate in the log.
                if (sb.Length + 2 > maxLength)
                {
                    return Truncated(sb, value);
                }

                sb.Append(c).Append(value[i + 1]);
                i++;
                continue;
            }

            var escape = Escape(c);
            var width = escape?.Length ?? (NeedsEscape(c) ? 6 : 1);
            if (sb.Length + width > maxLength)
            {
                return Truncated(sb, value);
            }

            if (escape is not null)
            {
                sb.Append(escape);
            }
            else if (NeedsEscape(c))
            {
                sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            }
            else
            {
                sb.Append(c);
            }
        }

        return sb.ToString();
    }

    private static string Truncated(StringBuilder sb, string value) =>
        sb.Append(CultureInfo.InvariantCulture, $"… ({value.Length} chars)").ToString();

    private static bool IsClean(string value)
    {
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                i++;
                continue;
            }

            if (NeedsEscape(c))
            {
                return false;
            }
        }

        return true;
    }

    private static string? Escape(char c) => c switch
    {
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        _ => null,
    };

    // C0, DEL and C1 controls; U+2028/U+2029, which many viewers treat as line breaks; bidirectional
    // embeddings, overrides and isolates, which can make a line read differently from what it contains;
    // lone surrogates (a pair is handled before this is asked).
    private static bool NeedsEscape(char c) =>
        char.IsControl(c)
        || c is '\u2028' or '\u2029' or '\u200e' or '\u200f' or (>= '\u202a' and <= '\u202e') or (>= '\u2066' and <= '\u2069')
        || char.IsSurrogate(c);
}
