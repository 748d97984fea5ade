using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using RequestMigration.Discovery.Instances;
using Spectre.Console;

namespace RequestMigration.Tools.Cli.Output;

/// <summary>
/// Where a command writes: human output through Spectre.Console, or with <c>--json</c> exactly one JSON document
/// (or one JSON object per line for the streaming commands) and nothing else on stdout.
/// </summary>
internal sealed class CliOutput
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        // Keeps non-ASCII item text readable in the output; the result is still valid JSON.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private readonly Lock _gate = new();

    public CliOutput(bool json)
    {
        Json = json;
        Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(System.Console.Out),
            Ansi = AnsiSupport.Detect,
            ColorSystem = ColorSystemSupport.Detect,
        });
        if (System.Console.IsOutputRedirected)
        {
            // Piped output has no terminal width; without this every table row would wrap at 80 columns.
            Console.Profile.Width = 240;
        }
    }

    /// <summary>Whether <c>--json</c> was given.</summary>
    public bool Json { get; }

    /// <summary>Human output (tables, markup); never used with <see cref="Json"/>.</summary>
    public IAnsiConsole Console { get; }

    /// <summary>Whether stdout is a terminal (live views need one).</summary>
    public static bool IsTerminal => !System.Console.IsOutputRedirected;

    /// <summary>Writes one JSON value followed by a newline and flushes, so a reader of a stream sees it at once.</summary>
    public void WriteJson(JsonNode node)
    {
        var text = node.ToJsonString(JsonOptions);
        lock (_gate)
        {
            System.Console.Out.WriteLine(text);
            System.Console.Out.Flush();
        }
    }

    /// <summary>Writes a line of Spectre markup.</summary>
    public void MarkupLine(string markup)
    {
        lock (_gate)
        {
            Console.MarkupLine(markup);
        }
    }

    /// <summary>A note for the person at the terminal, on stderr (never mixed into data on stdout).</summary>
    public static void Note(string text) => System.Console.Error.WriteLine(text);

    /// <summary>An instance id as the runtime writes it in keys and logs.</summary>
    public static string Id(ulong id) => id.ToString("x", CultureInfo.InvariantCulture);

    /// <summary>A lease id as etcd prints it.</summary>
    public static string Lease(long id) => id.ToString("x", CultureInfo.InvariantCulture);

    /// <summary>An age such as <c>42s</c>, <c>3m12s</c>, <c>2h05m</c> or <c>3d04h</c>.</summary>
    public static string Age(TimeSpan age)
    {
        if (age < TimeSpan.Zero)
        {
            // The registering host's clock is ahead of ours.
            age = TimeSpan.Zero;
        }

        return age.TotalSeconds < 60 ? $"{(int)age.TotalSeconds}s"
            : age.TotalMinutes < 60 ? $"{(int)age.TotalMinutes}m{age.Seconds:00}s"
            : age.TotalHours < 24 ? $"{(int)age.TotalHours}h{age.Minutes:00}m"
            : $"{(int)age.TotalDays}d{age.Hours:00}h";
    }

    /// <summary>Transport with the alternates a client may also use: <c>quic (+tcp)</c>.</summary>
    public static string Transport(InstanceRecord r) =>
        r.Alternates.Count == 0 ? r.Transport : $"{r.Transport} (+{string.Join(",", r.Alternates.Select(a => a.Transport))})";

    /// <summary>The instance table's columns (endpoint, instance, address, transport, tags, age), shared by every command.</summary>
    public static Table WithInstanceColumns(Table table) =>
        table.AddColumn("ENDPOINT").AddColumn("INSTANCE").AddColumn("ADDRESS").AddColumn("TRANSPORT").AddColumn("TAGS").AddColumn(new TableColumn("AGE").RightAligned());

    /// <summary>One instance as a row of a table made with <see cref="WithInstanceColumns"/>; <paramref name="age"/> is already formatted.</summary>
    public static Table AddInstanceRow(Table table, InstanceRecord r, string age) =>
        table.AddRow(
            Esc(r.EndpointId.Path),
            Esc(Id(r.InstanceId)),
            Esc(r.Address),
            Esc(Transport(r)),
            Esc(r.Tags.Count == 0 ? "-" : InstanceTags.Format(r.Tags)),
            age);

    /// <summary>The JSON form of an instance, shared by every command.</summary>
    public static JsonObject InstanceJson(InstanceRecord r, DateTimeOffset now)
    {
        var tags = new JsonObject();
        foreach (var (k, v) in r.Tags.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            tags[k] = v;
        }

        var metadata = new JsonObject();
        foreach (var (k, v) in r.Metadata.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            metadata[k] = v;
        }

        var alternates = new JsonArray();
        foreach (var a in r.Alternates)
        {
            alternates.Add(new JsonObject { ["transport"] = a.Transport, ["address"] = a.Address });
        }

        return new JsonObject
        {
            ["endpoint"] = r.EndpointId.Path,
            ["instance_id"] = Id(r.InstanceId),
            ["address"] = r.Address,
            ["transport"] = r.Transport,
            ["alternates"] = alternates,
            ["tags"] = tags,
            ["metadata"] = metadata,
            ["registered_at"] = r.RegisteredAt?.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture),
            ["age_seconds"] = r.RegisteredAt is { } at ? Math.Round(Math.Max(0, (now - at).TotalSeconds), 3) : null,
        };
    }

    /// <summary>Escapes text for Spectre markup.</summary>
    public static string Esc(string? text) => Markup.Escape(text ?? string.Empty);
}
