using RequestMigration.Diagnostics;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.BadInput;

public sealed class LogValuesTests
{
    [Theory]
    [InlineData("line\nforged", @"line\nforged")]
    [InlineData("cr\r\ntab\t", @"cr\r\ntab\t")]
    [InlineData("\u001b[31mred\u001b[0m", @"\u001b[31mred\u001b[0m")]
    [InlineData("nul\0bell\u0007del\u007fc1\u0085", @"nul\u0000bell\u0007del\u007fc1\u0085")]
    [InlineData("ls\u2028ps\u2029", @"ls\u2028ps\u2029")]
    [InlineData("rlo\u202eevil\u2066", @"rlo\u202eevil\u2066")]
    public void Control_characters_are_escaped(string value, string expected) => LogValues.Sanitize(value).ShouldBe(expected);

    [Fact]
    public void Lone_surrogates_are_escaped()
    {
        // Built here: a lone surrogate does not survive as attribute data.
        var value = "lone" + (char)0xd800 + "high, lone" + (char)0xdc00 + "low";

        LogValues.Sanitize(value).ShouldBe(@"lone\ud800high, lone\udc00low");
    }

    [Theory]
    [InlineData("0123456789abcdef")]
    [InlineData("ns/comp/ep")]
    [InlineData("emoji \U0001F600 and accents éü and a back\\slash")]
    public void Clean_short_values_are_returned_as_they_are(string value) => LogValues.Sanitize(value).ShouldBeSameAs(value);

    [Fact]
    public void Long_values_are_capped_with_an_ellipsis_and_the_original_length()
    {
        var value = new string('p', 65_000);

        var logged = LogValues.Sanitize(value);

        logged.ShouldBe(new string('p', LogValues.DefaultMaxLength) + "… (65000 chars)");
    }

    [Fact]
    public void The_cap_counts_escapes_and_never_splits_an_escape_or_a_surrogate_pair()
    {
        LogValues.Sanitize("abc\ndef", maxLength: 4).ShouldBe("abc… (7 chars)");
        LogValues.Sanitize("abc\u001bdef", maxLength: 8).ShouldBe("abc… (7 chars)");
        LogValues.Sanitize("abc\U0001F600", maxLength: 4).ShouldBe("abc… (5 chars)");
        LogValues.Sanitize("abc\U0001F600", maxLength: 5).ShouldBe("abc\U0001F600");
    }

    [Fact]
    public void Null_is_logged_as_a_marker() => LogValues.Sanitize(null).ShouldBe("(null)");
}
