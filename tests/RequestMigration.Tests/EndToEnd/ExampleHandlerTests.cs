using System.Net;
using System.Text.RegularExpressions;
using RequestMigration.Tests.BadInput;
using RequestMigration.Wire;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>
/// The example server's handler (one item per character of the input), driven over a raw TLS connection so
/// the test sees exactly what it sends, including the resume field a migrating router sets.
/// </summary>
[Collection(EndToEndCollection.Name)]
public sealed partial class ExampleHandlerTests : IAsyncLifetime
{
    // Characters outside the Basic Multilingual Plane (two UTF-16 code units each) between plain ones.
    private const string Input = "a\U0001F600b\U0001D11Ec";
    private static readonly string[] Characters = ["a", "\U0001F600", "b", "\U0001D11E", "c"];

    private readonly ExampleHarness _harness = new();
    private IPEndPoint? _endpoint;

    public async ValueTask InitializeAsync()
    {
        var server = _harness.LaunchServer("s1", "never");
        var line = await server.WaitForLineAsync(ExampleHarness.ServingLine, TimeSpan.FromSeconds(30));
        var m = AddressPattern().Match(line);
        m.Success.ShouldBeTrue($"no address in '{line}'");
        _endpoint = new IPEndPoint(IPAddress.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    public ValueTask DisposeAsync() => _harness.DisposeAsync();

    [Fact]
    public async Task Characters_outside_the_BMP_are_sent_whole_one_item_each()
    {
        var items = await GenerateAsync(Input, resumeFrom: 0);

        items.ShouldBe(Characters.Select(c => $"from server: s1, data: {c}"), _harness.DescribeAll());
        items.ShouldAllBe(i => !i.Contains('\uFFFD'));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(9)]
    public async Task A_migrated_request_skips_as_many_characters_as_items_were_delivered(int resumeFrom)
    {
        var items = await GenerateAsync(Input, resumeFrom);

        items.ShouldBe(Characters.Skip(resumeFrom).Select(c => $"from server: s1, data: {c}"), _harness.DescribeAll());
    }

    private async Task<List<string>> GenerateAsync(string input, int resumeFrom)
    {
        await using var conn = await RawConnection.ConnectTlsAsync(_endpoint!);
        var resume = resumeFrom == 0 ? ReadOnlyMemory<byte>.Empty : ResumeToken.Create(resumeFrom);
        await conn.SendAsync(RawConnection.Frame((byte)FrameType.Request, RawConnection.RequestPayload(ExampleHarness.Endpoint, RawConnection.Json(input), resume: resume)));
        var frames = await conn.ReadResponseAsync();
        frames[^1].FrameType.ShouldBe(FrameType.End, string.Join(", ", frames) + _harness.DescribeAll());
        return [.. frames.SkipLast(1).Select(f => f.Text)];
    }

    [GeneratedRegex(@" at (\d+\.\d+\.\d+\.\d+):(\d+) ")]
    private static partial Regex AddressPattern();
}
