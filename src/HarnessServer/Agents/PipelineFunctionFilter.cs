using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Identity;
using HarnessServer.Pipeline;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;
using Microsoft.SemanticKernel;

namespace HarnessServer.Agents;

/// <summary>Who a kernel's tool functions run for: set on the turn's kernel, read by <see cref="PipelineFunctionFilter"/>.</summary>
internal sealed record TurnInvocation(CurrentUser Caller, Guid SessionId, Guid? TurnId = null)
{
    private const string Key = "harness.turn";

    public void AttachTo(Kernel kernel) => kernel.Data[Key] = this;

    public static TurnInvocation? Of(Kernel kernel) => kernel.Data.TryGetValue(Key, out var value) ? value as TurnInvocation : null;
}

/// <summary>
/// The Semantic Kernel function-invocation filter that is the only way a tool function gets a result: every invocation
/// of a harness tool function, whoever starts it (<see cref="AgentTurns"/> for each call the model proposed, or SK's
/// own automatic function calling), is handed to <see cref="ToolCallPipeline"/> — schema, policy, approval, sandbox,
/// audit — and the pipeline's response becomes the function's result. The filter never calls <c>next</c>: the
/// functions' own bodies do nothing but throw, so a kernel without this filter fails closed instead of running a tool
/// unchecked. A function that is not a harness tool, or a kernel that does not say whose turn it is, is refused.
/// Refusals the pipeline answers as problems (a paused session, the audit chain unavailable) propagate to the caller.
/// </summary>
internal sealed class PipelineFunctionFilter(ToolCallPipeline pipeline, IOptions<JsonOptions> json) : IFunctionInvocationFilter
{
    private const string ResponseKey = "harness.response";

    /// <summary>The pipeline's response behind a tool function's result.</summary>
    public static ToolCallResponse? ResponseOf(FunctionResult result) =>
        result.Metadata?.TryGetValue(ResponseKey, out var response) == true ? response as ToolCallResponse : null;

    public async Task OnFunctionInvocationAsync(FunctionInvocationContext context, Func<FunctionInvocationContext, Task> next)
    {
        var tool = ToolFunctions.ToolOf(context.Function)
            ?? throw new InvalidOperationException($"Function '{context.Function.Name}' is not a harness tool; only harness tools may be invoked in an agent turn.");
        var turn = TurnInvocation.Of(context.Kernel)
            ?? throw new InvalidOperationException("The kernel carries no turn: harness tools run only for a known user and session.");

        var response = await pipeline.RunAsync(new ToolCallRequest(turn.Caller, turn.SessionId, tool, ArgumentsOf(context.Arguments), turn.TurnId), context.CancellationToken);
        // The value is the response as the HTTP API writes it, which is what any caller hands the model; the response
        // itself rides along in the metadata for callers that act on it (a call waiting for approval ends the turn).
        context.Result = new FunctionResult(context.Function, JsonSerializer.Serialize(response, json.Value.SerializerOptions),
            metadata: new Dictionary<string, object?> { [ResponseKey] = response });
    }

    /// <summary>
    /// Arguments as a kernel carries them: one entry per argument name, each value the JSON the model sent. Null with
    /// the reason when they cannot be carried faithfully: not a JSON object, or two names a kernel cannot tell apart
    /// (its argument names ignore case), which would silently drop one value.
    /// </summary>
    public static KernelArguments? ToKernelArguments(JsonElement arguments, out string? error)
    {
        if (arguments.ValueKind != JsonValueKind.Object)
        {
            error = $"The arguments must be a JSON object; they are {arguments.ValueKind.ToString().ToLowerInvariant()}.";
            return null;
        }

        var result = new KernelArguments();
        foreach (var property in arguments.EnumerateObject())
        {
            if (result.ContainsName(property.Name))
            {
                error = $"The argument '{property.Name}' is given more than once (names are compared ignoring case).";
                return null;
            }

            result[property.Name] = property.Value;
        }

        error = null;
        return result;
    }

    // Values are JsonElements when they come from ToKernelArguments; anything else (SK's automatic invocation parses
    // arguments itself) is serialised as it stands, and the tool's schema judges the outcome.
    private static JsonElement ArgumentsOf(KernelArguments arguments)
    {
        var json = new JsonObject();
        foreach (var (name, value) in arguments)
        {
            json[name] = value switch
            {
                null => null,
                JsonElement element => JsonNode.Parse(element.GetRawText()),
                _ => JsonSerializer.SerializeToNode(value),
            };
        }

        return JsonSerializer.SerializeToElement(json);
    }
}
