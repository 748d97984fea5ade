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

    // What JsonSerializer.Deserialize(span, options) would use; reading with a Utf8JsonReader of our own
    // must accept the same comments and trailing commas, no more.
    private readonly JsonReaderOptions _readerOptions;

    /// <summary>Creates a serializer; default options use web defaults (camelCase) with reflection fallback.</summary>
    public JsonPayloadSerializer(JsonSerializerOptions? options = null)
    {
        _options = options ?? new JsonSerializerOptions(JsonSerializerDefaults.Web) { TypeInfoResolver = new DefaultJsonTypeInfoResolver() };
        _options.MakeReadOnly(populateMissingResolver: true);
        _readerOptions = new JsonReaderOptions
        {
            AllowTrailingCommas = _options.AllowTrailingCommas,
            CommentHandling = _options.ReadCommentHandling,
            MaxDepth = _options.MaxDepth,
        };
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
            JsonSerializer.Serialize(writer, value, TypeInfo<T>());
            writer.Flush();
        }
        finally
        {
            // Drop the reference to the caller's buffer.
            writer.Reset(NullBufferWriter.Instance);
        }
    }

    /// <inheritdoc />
    /// <exception cref="JsonException">The payload is not one JSON value of type <typeparamref name="T"/>, or has anything but whitespace after it.</exception>
    public T Deserialize<T>(ReadOnlySequence<byte> payload)
    {
        var reader = payload.IsSingleSegment ? new Utf8JsonReader(payload.FirstSpan, _readerOptions) : new Utf8JsonReader(payload, _readerOptions);
        var value = JsonSerializer.Deserialize(ref reader, TypeInfo<T>())!;

        // Deserialize(ref reader) stops after the first value, so `"a" trailing` or `"a""b"` would pass as
        // "a". Reading on throws for anything after it but whitespace (and comments the options skip).
        if (reader.Read())
        {
            throw new JsonException($"unexpected {reader.TokenType} after the JSON value at byte {reader.TokenStartIndex}");
        }

        return value;
    }

    private JsonTypeInfo<T> TypeInfo<T>()
    {
        // One cached entry per T (the common case is one serializer per process); a different options
        // instance just replaces it. The entry is one object, so readers never see a torn pair.
        var entry = TypeInfoCache<T>.Entry;
        if (entry is not null && ReferenceEquals(entry.Options, _options))
        {
            return entry.Info;
        }

        var info = (JsonTypeInfo<T>)_options.GetTypeInfo(typeof(T));
        TypeInfoCache<T>.Entry = new CachedTypeInfo<T>(_options, info);
        return info;
    }

    private static class TypeInfoCache<T>
    {
        public static volatile CachedTypeInfo<T>? Entry;
    }

    private sealed record CachedTypeInfo<T>(JsonSerializerOptions Options, JsonTypeInfo<T> Info);

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
