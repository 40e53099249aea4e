using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Json.Schema;

namespace HarnessServer.Tools;

/// <summary>How a tool runs: one of the contract's built-ins, or an admin-defined argv template run in the sandbox.</summary>
internal enum ToolKind
{
    Builtin,
    Command,

    /// <summary>
    /// A tool of an upstream MCP server (<c>mcp.&lt;server&gt;.&lt;tool&gt;</c>), managed by <c>/v1/admin/mcp-servers</c>;
    /// its <see cref="ToolDefinition.Argv"/> is <c>[server, upstream tool name]</c>.
    /// </summary>
    Mcp,
}

/// <summary>
/// One tool of a tenant's registry. <see cref="Argv"/> is the command template of a <see cref="ToolKind.Command"/>
/// tool: an entry <c>{name}</c> is replaced by argument <c>name</c> as one whole argv entry, never as shell text.
/// </summary>
internal sealed partial record ToolDefinition(
    string Name,
    string Description,
    JsonElement Schema,
    ToolKind Kind,
    IReadOnlyList<string>? Argv,
    bool Enabled,
    int Version)
{
    private JsonSchema? _compiled;
    private string? _digest;

    /// <summary>The schema built once per definition (definitions are immutable and cached per tenant).</summary>
    public JsonSchema CompiledSchema => _compiled ??= JsonSchema.Build(Schema);

    /// <summary>
    /// SHA-256 (hex) of the canonical JSON of what decides how a call runs: name, kind, argv template and schema. A
    /// call held for approval stores it, so a definition changed before the call runs is caught (a new description or
    /// the enabled flag do not change it).
    /// </summary>
    public string Digest => _digest ??= Convert.ToHexStringLower(SHA256.HashData(Audit.CanonicalJson.Serialize(new JsonObject
    {
        ["name"] = Name,
        ["kind"] = Kind.ToString(),
        ["argv"] = Argv is null ? null : new JsonArray([.. Argv.Select(a => JsonValue.Create(a))]),
        ["schema"] = JsonNode.Parse(Schema.GetRawText()),
    })));

    /// <summary>
    /// The argv a call of this command tool runs: each placeholder entry becomes exactly one entry, the argument's value
    /// (never parsed as shell text), and a placeholder whose argument is absent or null is left out.
    /// </summary>
    public List<string> ArgvFor(JsonElement arguments)
    {
        var argv = new List<string>(Argv?.Count ?? 0);
        foreach (var entry in Argv ?? [])
        {
            if (Placeholder().Match(entry) is { Success: true } placeholder)
            {
                if (arguments.TryGetProperty(placeholder.Groups[1].Value, out var value) && value.ValueKind != JsonValueKind.Null)
                {
                    argv.Add(value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText());
                }
            }
            else
            {
                argv.Add(entry);
            }
        }

        return argv;
    }

    /// <summary>An argv entry that is a whole placeholder, <c>{name}</c>; group 1 is the argument's name.</summary>
    [GeneratedRegex("^\\{([A-Za-z_][A-Za-z0-9_]*)\\}$")]
    internal static partial Regex Placeholder();
}
