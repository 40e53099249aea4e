using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Http;

namespace HarnessServer.Pipeline;

/// <summary>
/// A result as the call's jsonb column can hold it. The tools already give bytes that are not NUL-free UTF-8 as base64
/// (<see cref="Tools.OutputText"/>); anything else with a string jsonb refuses (a NUL, an unpaired surrogate) is
/// stored whole as <c>{ "encoding": "base64", "json": base64 of its canonical JSON }</c>, which loses nothing.
/// </summary>
internal static class StorableResult
{
    public static JsonNode? Of(JsonNode? result)
    {
        if (result is null || Storable(result))
        {
            return result;
        }

        // CanonicalJson writes any string, lone surrogates included, as JSON text: valid UTF-8 without a NUL byte.

        return new JsonObject
        {
            ["encoding"] = Tools.OutputText.Base64Encoding,
            ["json"] = Convert.ToBase64String(CanonicalJson.Serialize(result)),
        };
    }

    private static bool Storable(JsonNode node)
    {
        try
        {
            return StorableTree(node);
        }
        catch (InvalidOperationException)
        {
            // A node parsed from text whose strings System.Text.Json cannot read back (an escaped lone surrogate).
            return false;
        }
    }

    private static bool StorableTree(JsonNode node) => node switch
    {
        JsonObject obj => obj.All(m => StorableText.Problem(m.Key) is null && (m.Value is null || StorableTree(m.Value))),
        JsonArray array => array.All(item => item is null || StorableTree(item)),
        JsonValue value when value.TryGetValue<string>(out var text) => StorableText.Problem(text) is null,
        _ => true,
    };
}
