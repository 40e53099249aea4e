using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using Json.Schema;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace HarnessServer.Tools;

/// <summary>
/// The write side of the tool registry: admins define, replace and delete tools. Every change is a new, validated
/// version stored with its audit event in one unit, and every process's <see cref="ToolRegistry"/> forgets the tenant.
/// </summary>
internal sealed partial class ToolAdministration(ToolRegistry registry, AuditChain audit, ChangeFeed feed, TimeProvider time)
{
    /// <summary>Defines a new tool (409 <c>tool_exists</c> when one has the name).</summary>
    public async Task<ToolView> CreateAsync(CurrentUser user, ToolBody body, CancellationToken ct)
    {
        if (await registry.FindAsync(user.TenantId, body.Name ?? "", ct) is not null)
        {
            throw new HarnessError(ErrorKind.Conflict, "tool_exists", $"A tool named '{body.Name}' already exists; PUT replaces it.");
        }

        return await StoreAsync(body.Name ?? "", body, null, user, ct);
    }

    /// <summary>Stores the next version of an existing tool; a built-in's description and enabled flag only.</summary>
    public async Task<ToolView> ReplaceAsync(CurrentUser user, string name, ToolBody body, CancellationToken ct)
    {
        var current = await registry.FindAsync(user.TenantId, name, ct)
            ?? throw new HarnessError(ErrorKind.NotFound, "tool_not_found", $"No tool named '{name}' exists; POST creates it.");
        RefuseMcp(current);
        return await StoreAsync(name, body, current, user, ct);
    }

    /// <summary>Deletes an admin-defined tool (a version marked deleted); built-ins are disabled instead.</summary>
    public async Task DeleteAsync(CurrentUser user, string name, CancellationToken ct)
    {
        var current = await registry.FindAsync(user.TenantId, name, ct)
            ?? throw new HarnessError(ErrorKind.NotFound, "tool_not_found", $"No tool named '{name}' exists.");
        RefuseMcp(current);
        if (current.Kind == ToolKind.Builtin)
        {
            throw new HarnessError(ErrorKind.Conflict, "builtin_tool",
                $"'{name}' is a built-in tool; disable it with PUT {{ \"enabled\": false }} instead.");
        }

        await AppendVersionAsync(user, current, new ToolRegistration
        {
            TenantId = user.TenantId, Name = name, Description = current.Description,
            Schema = JsonDocument.Parse(current.Schema.GetRawText()), Kind = current.Kind, Argv = current.Argv?.ToArray(),
            Enabled = false, Deleted = true, ChangedBy = user.UserId, ChangedAt = time.GetUtcNow(),
        }, "tool.deleted", ct);
    }

    // An upstream MCP server's tools change only through its registration, where changes are held for review.
    private static void RefuseMcp(ToolDefinition current)
    {
        if (current.Kind == ToolKind.Mcp)
        {
            throw new HarnessError(ErrorKind.Conflict, "mcp_tool",
                $"'{current.Name}' belongs to MCP server '{current.Argv?[0]}'; change it through /v1/admin/mcp-servers.");
        }
    }

    private async Task<ToolView> StoreAsync(string name, ToolBody body, ToolDefinition? current, CurrentUser user, CancellationToken ct)
    {
        var registration = Validate(name, body, current, user, time);
        var version = await AppendVersionAsync(user, current, registration, current is null ? "tool.created" : "tool.changed", ct);
        return ToolView.Of(new ToolDefinition(registration.Name, registration.Description, registration.Schema.RootElement,
            registration.Kind, registration.Argv, registration.Enabled, version));
    }

    /// <summary>Stores the next version of a tool with its audit event and returns the version number.</summary>
    private async Task<int> AppendVersionAsync(CurrentUser user, ToolDefinition? current, ToolRegistration next, string type, CancellationToken ct)
    {
        var receipt = await audit.AppendAsync(user.TenantId, async (unit, token) =>
        {
            var newest = await unit.Db.ToolRegistrations.Where(t => t.Name == next.Name).MaxAsync(t => (int?)t.Version, token) ?? 0;
            next.Version = newest + 1;
            unit.Db.ToolRegistrations.Add(next);
            try
            {
                await unit.Db.SaveChangesAsync(token);
            }
            catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
            {
                throw new HarnessError(ErrorKind.Conflict, "tool_changed", $"Tool '{next.Name}' changed concurrently; retry.");
            }

            unit.NotifyChange(ToolRegistry.ChangeKind, user.TenantId);
            return (next.Version, (IReadOnlyList<AuditEntry>)[new AuditEntry(type, new AuditActor(user.UserId, user.DisplayName), Tool: next.Name,
                Payload: new JsonObject
                {
                    ["name"] = next.Name,
                    ["beforeVersion"] = current?.Version,
                    ["afterVersion"] = next.Version,
                    ["enabled"] = next.Enabled,
                    ["kind"] = next.Kind.ToString().ToLowerInvariant(),
                })]);
        }, ct);
        // This process forgets at once; the others hear the notification committed with the version.
        feed.Publish(ToolRegistry.ChangeKind, user.TenantId);
        return receipt.Result;
    }

    private static ToolRegistration Validate(string name, ToolBody body, ToolDefinition? current, CurrentUser user, TimeProvider time)
    {
        static HarnessError Invalid(string detail) => new(ErrorKind.Invalid, "invalid_tool", detail);

        if (!NamePattern().IsMatch(name))
        {
            throw Invalid($"Tool name '{name}' must match {NamePattern()} (lowercase letters, digits, '.', '_', '-').");
        }

        if (name.StartsWith("mcp.", StringComparison.Ordinal) && current is null)
        {
            throw Invalid("Names starting with 'mcp.' belong to upstream MCP servers (/v1/admin/mcp-servers).");
        }

        if (body.Name is not null && body.Name != name)
        {
            throw Invalid($"The body names '{body.Name}' but the path names '{name}'.");
        }

        var kind = body.Kind?.ToLowerInvariant() switch
        {
            null => current?.Kind ?? ToolKind.Command,
            "command" => ToolKind.Command,
            "builtin" => ToolKind.Builtin,
            var other => throw Invalid($"Unknown kind '{other}'; use 'command' (an argv template run in the sandbox) or 'builtin'."),
        };

        if (kind == ToolKind.Builtin || BuiltInTools.All.ContainsKey(name))
        {
            var builtin = BuiltInTools.All.GetValueOrDefault(name)
                ?? throw Invalid($"'{name}' is not a built-in tool; only the contract's built-ins have kind 'builtin'.");
            if (kind != ToolKind.Builtin || body.Schema is not null || body.Argv is not null)
            {
                throw Invalid($"'{name}' is a built-in tool: only its description and enabled flag can change.");
            }

            return new ToolRegistration
            {
                TenantId = user.TenantId, Name = name, Description = body.Description ?? builtin.Description,
                Schema = JsonDocument.Parse(builtin.Schema.GetRawText()), Kind = ToolKind.Builtin,
                Enabled = body.Enabled ?? true, ChangedBy = user.UserId, ChangedAt = time.GetUtcNow(),
            };
        }

        if (body.Schema is not { ValueKind: JsonValueKind.Object } schema)
        {
            throw Invalid("'schema' must be a JSON Schema object describing the tool's arguments.");
        }

        // The schema is stored as jsonb and hashed into the tool's digest: strings neither can hold are refused here.
        if (ToolArguments.Unrecordable(schema) is [var unrecordable, ..])
        {
            throw Invalid($"'schema' cannot be stored: {unrecordable.Path}: {unrecordable.Reason}");
        }

        var meta = MetaSchemas.Draft202012.Evaluate(schema, new EvaluationOptions { OutputFormat = OutputFormat.List });
        if (!meta.IsValid)
        {
            var error = (meta.Details ?? []).FirstOrDefault(d => d.Errors is { Count: > 0 });
            throw Invalid($"'schema' is not a valid JSON Schema: {error?.InstanceLocation}: {error?.Errors?.Values.FirstOrDefault() ?? "invalid"}.");
        }

        try
        {
            _ = JsonSchema.Build(schema);
        }
        catch (Exception e) when (e is JsonSchemaException or JsonException or ArgumentException or InvalidOperationException)
        {
            throw Invalid($"'schema' cannot be used: {e.Message}");
        }

        if (!schema.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "object")
        {
            throw Invalid("'schema' must have \"type\": \"object\": tool arguments are an object.");
        }

        var argv = body.Argv ?? throw Invalid("A command tool needs 'argv': the program and its arguments, e.g. [\"git\", \"log\", \"{ref}\"].");
        if (argv.Count == 0 || argv.Count > 256 || string.IsNullOrWhiteSpace(argv[0]) || ToolDefinition.Placeholder().IsMatch(argv[0]))
        {
            throw Invalid("'argv' must start with a fixed program name (not a placeholder) and have at most 256 entries.");
        }

        var properties = schema.TryGetProperty("properties", out var p) && p.ValueKind == JsonValueKind.Object
            ? p.EnumerateObject().Select(x => x.Name).ToHashSet(StringComparer.Ordinal)
            : [];
        foreach (var entry in argv)
        {
            // A placeholder is a whole argv entry, replaced by one argument value: never spliced into text.
            if (entry.Contains('{', StringComparison.Ordinal) && !ToolDefinition.Placeholder().IsMatch(entry))
            {
                throw Invalid($"argv entry '{entry}' mixes text and a placeholder; a placeholder must be a whole entry like \"{{path}}\".");
            }

            if (ToolDefinition.Placeholder().Match(entry) is { Success: true } m && !properties.Contains(m.Groups[1].Value))
            {
                throw Invalid($"argv entry '{entry}' names '{m.Groups[1].Value}', which is not a property of the schema.");
            }
        }

        return new ToolRegistration
        {
            TenantId = user.TenantId, Name = name, Description = body.Description ?? "",
            Schema = JsonDocument.Parse(schema.GetRawText()), Kind = ToolKind.Command, Argv = [.. argv],
            Enabled = body.Enabled ?? true, ChangedBy = user.UserId, ChangedAt = time.GetUtcNow(),
        };
    }

    [GeneratedRegex("^[a-z][a-z0-9_.-]{0,99}$")]
    private static partial Regex NamePattern();
}

/// <summary>The body of <c>POST /v1/admin/tools</c> and <c>PUT /v1/admin/tools/{name}</c>.</summary>
internal sealed record ToolBody(string? Name, string? Description, JsonElement? Schema, string? Kind, IReadOnlyList<string>? Argv, bool? Enabled);

/// <summary>A tool as admins see it.</summary>
internal sealed record ToolView(string Name, string Description, JsonElement Schema, string Kind, IReadOnlyList<string>? Argv, bool Enabled, int Version)
{
    public static ToolView Of(ToolDefinition t) => new(t.Name, t.Description, t.Schema, t.Kind.ToString().ToLowerInvariant(), t.Argv, t.Enabled, t.Version);
}
