using System.Text;
using System.Text.Json.Serialization;

namespace RequestMigration;

/// <summary>
/// One item of a response stream as a consumer sees it: data, or an error (<see cref="Event"/> =
/// <c>"error"</c>, message in <see cref="Comment"/>). Absent fields are omitted from JSON.
/// </summary>
/// <typeparam name="T">The response type.</typeparam>
public readonly record struct Annotated<T>
{
    /// <summary>The <see cref="Event"/> of an error item.</summary>
    public const string ErrorEvent = "error";

    /// <summary>The payload, when this is a data item.</summary>
    [JsonPropertyName("data")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public T? Data { get; init; }

    /// <summary>An optional item id.</summary>
    [JsonPropertyName("id")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Id { get; init; }

    /// <summary>An optional event name; <c>"error"</c> for errors.</summary>
    [JsonPropertyName("event")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Event { get; init; }

    /// <summary>An optional comment; the message of an error item.</summary>
    [JsonPropertyName("comment")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Comment { get; init; }

    /// <summary>Whether this is an error item.</summary>
    [JsonIgnore]
    public bool IsError => Event == ErrorEvent;

    /// <summary>A data item.</summary>
    public static Annotated<T> FromData(T data) => new() { Data = data };

    /// <summary>An error item.</summary>
    public static Annotated<T> FromError(string message) => new() { Event = ErrorEvent, Comment = message };

    /// <summary>Renders like the Rust runtime's debug output: <c>Annotated { data: Some("x"), id: None, event: None, comment: None }</c>.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder("Annotated { data: ");
        Opt(sb, Data is null ? null : Data.ToString(), Data is string);
        sb.Append(", id: ");
        Opt(sb, Id, true);
        sb.Append(", event: ");
        Opt(sb, Event, true);
        sb.Append(", comment: ");
        Opt(sb, Comment, true);
        return sb.Append(" }").ToString();
    }

    private static void Opt(StringBuilder sb, string? value, bool quote)
    {
        if (value is null)
        {
            sb.Append("None");
            return;
        }

        sb.Append("Some(");
        if (quote)
        {
            sb.Append('"').Append(value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)).Append('"');
        }
        else
        {
            sb.Append(value);
        }

        sb.Append(')');
    }
}
