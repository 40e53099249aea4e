using System.Text;
using System.Text.Json.Nodes;
using HarnessServer.Audit;

namespace HarnessServer.Tests.Audit;

public sealed class AuditCanonicalJsonTests
{
    [Theory]
    [InlineData(0d, "0")]
    [InlineData(1e21, "1e+21")]
    [InlineData(1e-7, "1e-7")]
    [InlineData(0.000001, "0.000001")]
    [InlineData(123456789012345680000d, "123456789012345680000")]
    [InlineData(5e-324, "5e-324")]
    [InlineData(1.7976931348623157e308, "1.7976931348623157e+308")]
    [InlineData(-1.5, "-1.5")]
    [InlineData(333333333.3333333, "333333333.3333333")]
    [InlineData(9007199254740992d, "9007199254740992")]
    [InlineData(1152921504606846976d, "1152921504606847000")]
    [InlineData(4.5e-7, "4.5e-7")]
    public void Numbers_use_the_ECMAScript_form(double value, string expected) =>
        Assert.Equal(expected, CanonicalJson.FormatNumber(value));

    [Fact]
    public void Members_sort_by_UTF16_code_units_and_strings_escape_as_JSON_stringify()
    {
        var node = new JsonObject
        {
            ["b"] = 1,
            ["a"] = new JsonArray(true, null, "x\u2028\u0001\"\\/<>é"),
            ["\u20ac"] = 1,
            ["\r"] = 2,
            ["\U0001F600"] = 3,
            ["\uFB33"] = 4,
        };

        var canonical = Encoding.UTF8.GetString(CanonicalJson.Serialize(node));

        // U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB33 by code unit (not by code point).
        Assert.Equal("{\"\\r\":2,\"a\":[true,null,\"x\u2028\\u0001\\\"\\\\/<>é\"],\"b\":1,\"€\":1,\"\U0001F600\":3,\"\uFB33\":4}", canonical);
    }

    [Fact]
    public void Equivalent_JSON_texts_canonicalise_alike()
    {
        var node = new JsonObject { ["n"] = 1.0, ["big"] = 12345678901234567890d, ["nested"] = new JsonObject { ["z"] = "", ["y"] = false } };

        var fromNode = CanonicalJson.Serialize(node);
        var fromText = CanonicalJson.Serialize(JsonNode.Parse("""{"n": 1.0, "big": 12345678901234567890, "nested": {"y": false, "z": ""}}"""));

        Assert.Equal(Encoding.UTF8.GetString(fromNode), Encoding.UTF8.GetString(fromText));
        Assert.Equal("""{"big":12345678901234567000,"n":1,"nested":{"y":false,"z":""}}""", Encoding.UTF8.GetString(fromNode));
    }
}
