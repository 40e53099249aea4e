using System.Text.Json.Nodes;

namespace HarnessServer.Tools;

/// <summary>What running a tool produced: the contract's structured result, or why it failed.</summary>
internal sealed record ToolOutcome(bool Succeeded, JsonNode? Result, ToolCallError? Error)
{
    public static ToolOutcome Success(JsonNode result) => new(true, result, null);

    public static ToolOutcome Failure(string code, string message, JsonNode? result = null) => new(false, result, new ToolCallError(code, message));
}

/// <summary>What went wrong with a call that did not run or did not succeed.</summary>
internal sealed record ToolCallError(string Code, string Message, IReadOnlyList<ArgumentError>? Arguments = null);
