using System.Buffers;
using System.Text;
using System.Text.Json;
using RequestMigration.Serialization;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Wire;

public sealed class JsonPayloadSerializerTests
{
    [Theory]
    [InlineData("\"a\" trailing")]
    [InlineData("\"a\"\"b\"")]
    [InlineData("\"a\" \"b\"")]
    [InlineData("\"a\",")]
    [InlineData("\"a\"}")]
    [InlineData("\"a\" // comment")]
    public void A_payload_with_anything_but_whitespace_after_the_value_is_refused(string json)
    {
        Should.Throw<JsonException>(() => JsonPayloadSerializer.Default.Deserialize<string>(Single(json)));
        Should.Throw<JsonException>(() => JsonPayloadSerializer.Default.Deserialize<string>(Split(json)));
    }

    [Theory]
    [InlineData("\"a\"")]
    [InlineData(" \"a\" ")]
    [InlineData("\"a\"\r\n\t ")]
    public void Whitespace_around_the_value_is_fine(string json)
    {
        JsonPayloadSerializer.Default.Deserialize<string>(Single(json)).ShouldBe("a");
        JsonPayloadSerializer.Default.Deserialize<string>(Split(json)).ShouldBe("a");
    }

    [Fact]
    public void Comments_after_the_value_are_fine_when_the_options_skip_comments()
    {
        var serializer = new JsonPayloadSerializer(new JsonSerializerOptions(JsonSerializerDefaults.Web) { ReadCommentHandling = JsonCommentHandling.Skip });

        serializer.Deserialize<string>(Single("\"a\" /* note */")).ShouldBe("a");
        Should.Throw<JsonException>(() => serializer.Deserialize<string>(Single("\"a\" /* note */ x")));
    }

    private static ReadOnlySequence<byte> Single(string json) => new(Encoding.UTF8.GetBytes(json));

    /// <summary>The same bytes as a multi-segment sequence, one byte per segment (how a payload split across reads arrives).</summary>
    private static ReadOnlySequence<byte> Split(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var first = new Segment(bytes.AsMemory(0, 1), 0);
        var last = first;
        for (var i = 1; i < bytes.Length; i++)
        {
            last = last.Append(bytes.AsMemory(i, 1));
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
