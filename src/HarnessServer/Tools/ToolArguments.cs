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

    /// <summary>
    /// What makes arguments impossible to decide and record faithfully, before any schema sees them: a number outside
    /// double's range (JsonSchema.Net passes 1e400 against <c>"maximum": 86400</c>, and the audit's canonical JSON has
    /// no form for it) and a property name given twice (the schema validator, the policy, the executor, the audit and
    /// whoever reads the stored call could each take a different one of the values).
    /// </summary>
    public static IReadOnlyList<ArgumentError> Unrecordable(JsonElement arguments)
    {
        var errors = new List<ArgumentError>();
        CheckStructure(arguments, "", errors);
        return errors;
    }

    private static void CheckStructure(JsonElement element, string path, List<ArgumentError> errors)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var names = new HashSet<string>(StringComparer.Ordinal);
                foreach (var property in element.EnumerateObject())
                {
                    var at = $"{path}/{Escape(property.Name)}";
                    if (!names.Add(property.Name))
                    {
                        errors.Add(new ArgumentError(at, $"The property '{property.Name}' is given more than once (duplicate name)."));
                    }

                    CheckStructure(property.Value, at, errors);
                }

                break;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    CheckStructure(item, $"{path}/{index++}", errors);
                }

                break;
            case JsonValueKind.Number when !element.TryGetDouble(out var number) || !double.IsFinite(number):
                errors.Add(new ArgumentError(path.Length == 0 ? "/" : path, "The number is out of range."));
                break;
        }
    }

    // JSON Pointer escaping of one property name.
    private static string Escape(string name) => name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

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
