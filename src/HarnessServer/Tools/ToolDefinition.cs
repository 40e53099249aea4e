using System.Text.Json;
using Json.Schema;

namespace HarnessServer.Tools;

/// <summary>How a tool runs: one of the contract's built-ins, or an admin-defined argv template run in the sandbox.</summary>
internal enum ToolKind
{
    Builtin,
    Command,
}

/// <summary>
/// One tool of a tenant's registry. <see cref="Argv"/> is the command template of a <see cref="ToolKind.Command"/>
/// tool: an entry <c>{name}</c> is replaced by argument <c>name</c> as one whole argv entry, never as shell text.
/// </summary>
internal sealed record ToolDefinition(
    string Name,
    string Description,
    JsonElement Schema,
    ToolKind Kind,
    IReadOnlyList<string>? Argv,
    bool Enabled,
    int Version)
{
    private JsonSchema? _compiled;

    /// <summary>The schema built once per definition (definitions are immutable and cached per tenant).</summary>
    public JsonSchema CompiledSchema => _compiled ??= JsonSchema.Build(Schema);
}
