using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Policies;

namespace HarnessServer.Sessions;

/// <summary>How pipeline facts appear in audit events and stored rows.</summary>
internal static class AuditViews
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };

    public static JsonObject Decision(PolicyDecision decision) => new()
    {
        ["effect"] = decision.Effect.ToString().ToLowerInvariant(),
        ["level"] = decision.Level.ToString().ToLowerInvariant(),
        ["source"] = decision.Source,
        ["index"] = decision.Index,
        ["reason"] = decision.Reason,
    };

    /// <summary>The contract's spelling of a status: <c>pending_approval</c>, <c>succeeded</c>, ...</summary>
    public static string Status(ToolCallStatus status) => JsonNamingPolicy.SnakeCaseLower.ConvertName(status.ToString());

    /// <summary>Results can be large; the chain carries their hash, the call row carries the result.</summary>
    public static string? HashOf(JsonNode? node) =>
        node is null ? null : Convert.ToHexStringLower(SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(node)));
}
