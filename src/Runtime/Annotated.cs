using System.Text;
using System.Text.Json.Serialization;

namespace RequestMigration;

/// <summary>
/// One item of a response stream as a consumer sees it: data, or an error (<see cref="Event"/> =
/// <c>"error"</c>, message in <see cref="Comment"/>). Absent fields are omitted from JSON.
/// </summary>
/// <typeparam name="T">The response type.</typeparam>
[JsonConverter(typeof(AnnotatedJsonConverterFactory))]
public readonly record struct Annotated<T>
{
    /// <summary>The <see cref="Event"/> of an error item.</summary>
    public const string ErrorEvent = "error";

    /// <summary>The payload, when this is a data item.</summary>
    [JsonPropertyName("data")]
    public T? Data { get; init; }

    /// <summary>An optional item id.</summary>
    [JsonPropertyName("id")]
    public string? Id { get; init; }

    /// <summary>An optional event name; <c>"error"</c> for errors.</summary>
    [JsonPropertyName("event")]
    public string? Event { get; init; }

    /// <summary>An optional comment; the message of an error item.</summary>
    [JsonPropertyName("comment")]
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

/// <summary>
/// JSON for <see cref="Annotated{T}"/>: fields that are null are omitted (an attribute can't say that for a
/// generic <c>data</c> that may be a value type, where 0 must still be written).
/// </summary>
internal sealed class AnnotatedJsonConverterFactory : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert) =>
        typeToConvert.IsGenericType && typeToConvert.GetGenericTypeDefinition() == typeof(Annotated<>);

    public override JsonConverter CreateConverter(Type typeToConvert, System.Text.Json.JsonSerializerOptions options) =>
        (JsonConverter)Activator.CreateInstance(typeof(AnnotatedJsonConverter<>).MakeGenericType(typeToConvert.GetGenericArguments()[0]))!;
}

internal sealed class AnnotatedJsonConverter<T> : JsonConverter<Annotated<T>>
{
    public override Annotated<T> Read(ref System.Text.Json.Utf8JsonReader reader, Type typeToConvert, System.Text.Json.JsonSerializerOptions options)
    {
        if (reader.TokenType != System.Text.Json.JsonTokenType.StartObject)
        {
            throw new System.Text.Json.JsonException("Annotated: expected a JSON object");
        }

        T? data = default;
        string? id = null, ev = null, comment = null;
        while (reader.Read() && reader.TokenType != System.Text.Json.JsonTokenType.EndObject)
        {
            var name = reader.GetString();
            reader.Read();
            switch (name)
            {
                case "data":
                    data = System.Text.Json.JsonSerializer.Deserialize<T>(ref reader, options);
                    break;
                case "id":
                    id = reader.GetString();
                    break;
                case "event":
                    ev = reader.GetString();
                    break;
                case "comment":
                    comment = reader.GetString();
                    break;
                default:
                    reader.Skip();
                    break;
            }
        }

        return new Annotated<T> { Data = data, Id = id, Event = ev, Comment = comment };
    }

    public override void Write(System.Text.Json.Utf8JsonWriter writer, Annotated<T> value, System.Text.Json.JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        if (value.Data is not null)
        {
            writer.WritePropertyName("data");
            System.Text.Json.JsonSerializer.Serialize(writer, value.Data, options);
        }

        WriteIfPresent(writer, "id", value.Id);
        WriteIfPresent(writer, "event", value.Event);
        WriteIfPresent(writer, "comment", value.Comment);
        writer.WriteEndObject();
    }

    private static void WriteIfPresent(System.Text.Json.Utf8JsonWriter writer, string name, string? value)
    {
        if (value is not null)
        {
            writer.WriteString(name, value);
        }
    }
}
