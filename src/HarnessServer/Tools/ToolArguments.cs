using System.Text.Json;
using Json.Schema;

namespace HarnessServer.Tools;

/// <summary>One reason the arguments of a call do not fit its tool's schema.</summary>
internal sealed record ArgumentError(string Path, string Reason);

/// <summary>Checks a call's arguments against its tool's JSON Schema and names every failing path.</summary>
internal static class ToolArguments
{
    private static readonly EvaluationOptions Options = new() { OutputFormat = OutputFormat.List };

    public static IReadOnlyList<ArgumentError> Validate(ToolDefinition tool, JsonElement arguments)
    {
        var results = tool.CompiledSchema.Evaluate(arguments, Options);
        if (results.IsValid)
        {
            return [];
        }

        var errors = new List<ArgumentError>();
        foreach (var detail in (results.Details ?? []).Prepend(results))
        {
            foreach (var (_, message) in detail.Errors ?? [])
            {
                var path = detail.InstanceLocation.ToString();
                errors.Add(new ArgumentError(path.Length == 0 ? "/" : path, message));
            }
        }

        return errors.Count > 0 ? errors.Distinct().ToList() : [new ArgumentError("/", "The arguments do not match the tool's schema.")];
    }

    /// <summary>The arguments as the policy engine sees them: top-level scalars as strings.</summary>
    public static Dictionary<string, string?> Flatten(JsonElement arguments)
    {
        var flat = new Dictionary<string, string?>(StringComparer.Ordinal);
        if (arguments.ValueKind != JsonValueKind.Object)
        {
            return flat;
        }

        foreach (var property in arguments.EnumerateObject())
        {
            flat[property.Name] = property.Value.ValueKind switch
            {
                JsonValueKind.String => property.Value.GetString(),
                JsonValueKind.Null => null,
                _ => property.Value.GetRawText(),
            };
        }

        return flat;
    }
}
