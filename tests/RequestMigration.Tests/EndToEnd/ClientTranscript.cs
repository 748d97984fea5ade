using System.Text.RegularExpressions;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>The example client's stdout split into attempts.</summary>
internal sealed partial class ClientTranscript
{
    private ClientTranscript(IReadOnlyList<Attempt> attempts, IReadOnlyList<string> unparsed, bool success, string raw)
    {
        Attempts = attempts;
        Unparsed = unparsed;
        Success = success;
        Raw = raw;
    }

    public IReadOnlyList<Attempt> Attempts { get; }

    /// <summary>Lines that are neither an attempt header, an item, an error, a retry notice nor the success banner.</summary>
    public IReadOnlyList<string> Unparsed { get; }

    /// <summary>Whether "=== Success! ===" was the last non-empty line.</summary>
    public bool Success { get; }

    public string Raw { get; }

    public static ClientTranscript Parse(IReadOnlyList<string> lines)
    {
        var attempts = new List<Attempt>();
        var unparsed = new List<string>();
        Attempt? current = null;
        var success = false;
        foreach (var line in lines)
        {
            success = false;
            if (line.Length == 0)
            {
                continue;
            }

            var header = AttemptHeader().Match(line);
            if (header.Success)
            {
                current = new Attempt(int.Parse(header.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
                attempts.Add(current);
                continue;
            }

            var item = ItemLine().Match(line);
            if (item.Success && current is not null)
            {
                current.Items.Add((item.Groups[1].Value, item.Groups[2].Value));
                continue;
            }

            if (line.StartsWith("Error: ", StringComparison.Ordinal) && current is not null)
            {
                current.Errors.Add(line["Error: ".Length..]);
                continue;
            }

            if (line == "Retrying request..." && current is not null)
            {
                current.Retried = true;
                continue;
            }

            if (line == "=== Success! ===")
            {
                success = true;
                continue;
            }

            unparsed.Add(line);
        }

        return new ClientTranscript(attempts, unparsed, success, string.Join('\n', lines));
    }

    [GeneratedRegex(@"^=== Attempt (\d+) ===$")]
    private static partial Regex AttemptHeader();

    // Annotated { data: Some("from server: server2, data: h"), id: None, event: None, comment: None }
    [GeneratedRegex("""^Annotated \{ data: Some\("from server: ([^,]+), data: (.)"\), id: None, event: None, comment: None \}$""")]
    private static partial Regex ItemLine();

    internal sealed class Attempt(int number)
    {
        public int Number { get; } = number;

        public List<(string Server, string Data)> Items { get; } = [];

        public List<string> Errors { get; } = [];

        public bool Retried { get; set; }

        public string Text => string.Concat(Items.Select(i => i.Data));

        public IEnumerable<string> Servers => Items.Select(i => i.Server).Distinct();
    }
}
