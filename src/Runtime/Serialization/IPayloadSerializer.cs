using System.Buffers;

namespace RequestMigration.Serialization;

/// <summary>Turns request and response values into frame payloads and back. Implementations must be thread-safe.</summary>
public interface IPayloadSerializer
{
    /// <summary>Writes <paramref name="value"/> to <paramref name="output"/>.</summary>
    void Serialize<T>(IBufferWriter<byte> output, T value);

    /// <summary>Reads a value from <paramref name="payload"/>.</summary>
    /// <exception cref="System.Text.Json.JsonException">Or another exception when the payload is not a valid <typeparamref name="T"/>.</exception>
    T Deserialize<T>(ReadOnlySequence<byte> payload);
}
