using System.Text.Json;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Wire;

public sealed class AnnotatedTests
{
    [Fact]
    public void Absent_fields_are_omitted_from_json()
    {
        JsonSerializer.Serialize(Annotated<string>.FromData("x")).ShouldBe("{\"data\":\"x\"}");
        JsonSerializer.Serialize(Annotated<string>.FromError("boom")).ShouldBe("{\"event\":\"error\",\"comment\":\"boom\"}");
        JsonSerializer.Serialize(Annotated<int>.FromData(0)).ShouldBe("{\"data\":0}");
        JsonSerializer.Deserialize<Annotated<string>>("{\"data\":\"y\",\"id\":\"7\"}").ShouldBe(new Annotated<string> { Data = "y", Id = "7" });
    }

    [Fact]
    public void Renders_like_the_original_debug_output()
    {
        Annotated<string>.FromData("from server: s, data: h").ToString()
            .ShouldBe("Annotated { data: Some(\"from server: s, data: h\"), id: None, event: None, comment: None }");
        Annotated<string>.FromError("bad").ToString().ShouldBe("Annotated { data: None, id: None, event: Some(\"error\"), comment: Some(\"bad\") }");
        Annotated<int>.FromData(3).ToString().ShouldBe("Annotated { data: Some(3), id: None, event: None, comment: None }");
        Annotated<string>.FromError("bad").IsError.ShouldBeTrue();
    }
}
