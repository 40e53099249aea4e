using System.Text.Json;
using HarnessServer.Data;
using HarnessServer.Http;
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
    /// Values a command tool would pass where its program reads options: a value starting with <c>-</c> in a placeholder
    /// entry is refused (<c>{"ref": "--output=/workspace/x"}</c> for <c>git log {ref}</c> is an option, not a ref), unless
    /// the template puts the placeholder after a fixed <c>--</c> entry or the property's schema lists the value
    /// explicitly (<c>enum</c> or <c>const</c>). Numbers count by their JSON text (<c>-1</c> starts with <c>-</c>).
    /// </summary>
    public static IReadOnlyList<ArgumentError> OptionLike(ToolDefinition tool, JsonElement arguments)
    {
        if (tool.Kind != ToolKind.Command || tool.Argv is null || arguments.ValueKind != JsonValueKind.Object)
        {
            return [];
        }

        var errors = new List<ArgumentError>();
        var afterEndOfOptions = false;
        foreach (var entry in tool.Argv.Skip(1))
        {
            if (ToolDefinition.Placeholder().Match(entry) is not { Success: true } placeholder)
            {
                afterEndOfOptions |= entry == "--";
                continue;
            }

            var name = placeholder.Groups[1].Value;
            if (afterEndOfOptions || !arguments.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }

            var text = value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText();
            if (text.StartsWith('-') && !ListedInSchema(tool.Schema, name, value))
            {
                errors.Add(new ArgumentError($"/{Escape(name)}",
                    $"The value starts with '-', so '{tool.Argv[0]}' would read it as an option. The tool's template must put {{{name}}} after \"--\", or its schema list the value in \"enum\" or \"const\"."));
            }
        }

        return errors;
    }

    private static bool ListedInSchema(JsonElement schema, string name, JsonElement value)
    {
        if (!schema.TryGetProperty("properties", out var properties) || properties.ValueKind != JsonValueKind.Object
            || !properties.TryGetProperty(name, out var property) || property.ValueKind != JsonValueKind.Object)
        {
            return false;
        }

        if (property.TryGetProperty("const", out var constant) && JsonElement.DeepEquals(constant, value))
        {
            return true;
        }

        return property.TryGetProperty("enum", out var listed) && listed.ValueKind == JsonValueKind.Array
            && listed.EnumerateArray().Any(item => JsonElement.DeepEquals(item, value));
    }

    /// <summary>
    /// What makes arguments impossible to decide and record faithfully, before any schema sees them: a number outside
    /// double's range (JsonSchema.Net passes 1e400 against <c>"maximum": 86400</c>, and the audit's canonical JSON has
    /// no form for it), a property name given twice (the schema validator, the policy, the executor, the audit and
    /// whoever reads the stored call could each take a different one of the values), and a string or name the stored
    /// call cannot hold (a NUL, an unpaired surrogate, bytes that are not UTF-8).
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
                    if (!TryReadName(property, out var name))
                    {
                        errors.Add(new ArgumentError(path.Length == 0 ? "/" : path, "A property name is not valid UTF-8 or escapes an unpaired surrogate; it cannot be stored."));
                        continue;
                    }

                    var at = $"{path}/{Escape(name)}";
                    if (StorableText.Problem(name) is { } nameProblem)
                    {
                        errors.Add(new ArgumentError(at, $"The property name cannot be stored: {nameProblem}."));
                    }

                    if (!names.Add(name))
                    {
                        errors.Add(new ArgumentError(at, $"The property '{name}' is given more than once (duplicate name)."));
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
            case JsonValueKind.String:
                // Arguments are stored as jsonb, which has no form for \u0000 or an unpaired surrogate.
                var problem = TryReadString(element, out var text) ? StorableText.Problem(text) : "it is not valid UTF-8 or escapes an unpaired surrogate";
                if (problem is not null)
                {
                    errors.Add(new ArgumentError(path.Length == 0 ? "/" : path, $"The string cannot be stored: {problem}."));
                }

                break;
        }
    }

    private static bool TryReadName(JsonProperty property, out string name)
    {
        try
        {
            name = property.Name;
            return true;
        }
        catch (InvalidOperationException)
        {
            name = "";
            return false;
        }
    }

    private static bool TryReadString(JsonElement element, out string text)
    {
        try
        {
            text = element.GetString()!;
            return true;
        }
        catch (InvalidOperationException)
        {
            text = "";
            return false;
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
