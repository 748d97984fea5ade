using System.Collections.Concurrent;
using RequestMigration.Routing;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Routing;

public sealed class RequestIdsTests
{
    [Fact]
    public async Task Ids_are_32_lowercase_hex_digits_and_unique_across_threads()
    {
        var seen = new ConcurrentDictionary<string, bool>();
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < 10_000; i++)
            {
                seen.TryAdd(RequestIds.Next(), true).ShouldBeTrue("an id came twice");
            }
        }, TestContext.Current.CancellationToken)));

        seen.Count.ShouldBe(40_000);
        seen.Keys.ShouldAllBe(id => id.Length == 32 && id.All(c => char.IsAsciiHexDigitLower(c) || char.IsAsciiDigit(c)));

        // One random prefix per process, so ids of different processes do not collide by counting alike.
        seen.Keys.Select(id => id[..16]).Distinct().ShouldHaveSingleItem();
    }
}
