using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace RequestMigration.Serialization;

/// <summary>
/// The default serializer: System.Text.Json with UTF-8 straight into the frame buffer. Pass options whose
/// <see cref="JsonSerializerOptions.TypeInfoResolver"/> includes a source-generated context to avoid reflection.
/// </summary>
public sealed class JsonPayloadSerializer : IPayloadSerializer
{
    // One Utf8JsonWriter per thread, re-pointed at each output: serialising an item allocates nothing.
    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    private readonly JsonSerializerOptions _options;

    /// <summary>Creates a serializer; default options use web defaults (camelCase) with reflection fallback.</summary>
    public JsonPayloadSerializer(JsonSerializerOptions? options = null)
    {
        _options = options ?? new JsonSerializerOptions(JsonSerializerDefaults.Web) { TypeInfoResolver = new DefaultJsonTypeInfoResolver() };
        _options.MakeReadOnly(populateMissingResolver: true);
    }

    /// <summary>A shared instance with default options.</summary>
    public static JsonPayloadSerializer Default { get; } = new();

    /// <inheritdoc />
    public void Serialize<T>(IBufferWriter<byte> output, T value)
    {
        var writer = t_writer;
        if (writer is null)
        {
            writer = new Utf8JsonWriter(output, new JsonWriterOptions { SkipValidation = true });
            t_writer = writer;
        }
        else
        {
            writer.Reset(output);
        }

        try
        {
            JsonSerializer.Serialize(writer, value, (JsonTypeInfo<T>)_options.GetTypeInfo(typeof(T)));
            writer.Flush();
        }
        finally
        {
            // Drop the reference to the caller's buffer.
            writer.Reset(NullBufferWriter.Instance);
        }
    }

    /// <inheritdoc />
    public T Deserialize<T>(ReadOnlySequence<byte> payload)
    {
        var reader = new Utf8JsonReader(payload);
        return JsonSerializer.Deserialize(ref reader, (JsonTypeInfo<T>)_options.GetTypeInfo(typeof(T)))!;
    }

    private sealed class NullBufferWriter : IBufferWriter<byte>
    {
        public static readonly NullBufferWriter Instance = new();

        public void Advance(int count)
        {
        }

        public Memory<byte> GetMemory(int sizeHint = 0) => new byte[Math.Max(sizeHint, 1)];

        public Span<byte> GetSpan(int sizeHint = 0) => new byte[Math.Max(sizeHint, 1)];
    }
}
