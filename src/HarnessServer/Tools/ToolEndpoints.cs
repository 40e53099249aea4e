using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Http;
using HarnessServer.Identity;
using Json.Schema;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace HarnessServer.Tools;

internal static partial class ToolEndpoints
{
    public static IEndpointRouteBuilder MapTools(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/admin/tools").RequireAuthorization(HarnessPolicies.Admin).WithTags("Tools");
        group.MapGet("/", ListAsync).WithName("ListTools").WithSummary("The tenant's registry: built-ins and admin-defined tools.");
        group.MapGet("/{name}", GetAsync).WithName("GetTool");
        group.MapPost("/", CreateAsync).WithName("CreateTool").WithSummary("Define a command tool (argv template, JSON Schema).");
        group.MapPut("/{name}", ReplaceAsync).WithName("ReplaceTool")
            .WithSummary("Replace a tool; for a built-in only its description and enabled flag can change.");
        group.MapDelete("/{name}", DeleteAsync).WithName("DeleteTool");

        var fetch = app.MapGroup("/v1/admin/http-fetch/domains").RequireAuthorization(HarnessPolicies.Admin).WithTags("Tools");
        fetch.MapGet("/", async (CurrentUser user, HttpFetchAllowList allowList, CancellationToken ct) => TypedResults.Ok(await allowList.GetAsync(user.TenantId, ct)))
            .WithName("GetHttpFetchDomains")
            .WithSummary("The domains http.fetch may reach: those the tenant's admins set, those the operator configured, and both.");
        fetch.MapPut("/", async (HttpFetchDomainsBody body, CurrentUser user, HttpFetchAllowList allowList, AuditChain audit, CancellationToken ct) =>
                TypedResults.Ok(await allowList.ReplaceAsync(user, body, audit, ct)))
            .WithName("PutHttpFetchDomains")
            .WithSummary("Replace the admins' allow-list ('example.com', '*.example.com'); validated, audited with the list before and after.")
            .ProducesProblem(StatusCodes.Status400BadRequest);
        return app;
    }

    private static async Task<Ok<ToolList>> ListAsync(CurrentUser user, ToolRegistry registry, CancellationToken ct) =>
        TypedResults.Ok(new ToolList((await registry.ListAsync(user.TenantId, ct)).OrderBy(t => t.Name, StringComparer.Ordinal).Select(ToolView.Of).ToList()));

    private static async Task<Results<Ok<ToolView>, ProblemHttpResult>> GetAsync(string name, CurrentUser user, ToolRegistry registry, CancellationToken ct) =>
        await registry.FindAsync(user.TenantId, name, ct) is { } tool
            ? TypedResults.Ok(ToolView.Of(tool))
            : Problems.Result(StatusCodes.Status404NotFound, "tool_not_found", $"No tool named '{name}' exists in this tenant's registry.");

    private static async Task<Created<ToolView>> CreateAsync(
        ToolBody body, CurrentUser user, ToolRegistry registry, AuditChain audit, ChangeFeed feed, TimeProvider time, CancellationToken ct)
    {
        if (await registry.FindAsync(user.TenantId, body.Name ?? "", ct) is not null)
        {
            throw new HarnessProblemException(StatusCodes.Status409Conflict, "tool_exists", $"A tool named '{body.Name}' already exists; PUT replaces it.");
        }

        var stored = await StoreAsync(body.Name ?? "", body, null, user, audit, feed, time, ct);
        return TypedResults.Created($"/v1/admin/tools/{stored.Name}", stored);
    }

    private static async Task<Ok<ToolView>> ReplaceAsync(
        string name, ToolBody body, CurrentUser user, ToolRegistry registry, AuditChain audit, ChangeFeed feed, TimeProvider time, CancellationToken ct)
    {
        var current = await registry.FindAsync(user.TenantId, name, ct)
            ?? throw new HarnessProblemException(StatusCodes.Status404NotFound, "tool_not_found", $"No tool named '{name}' exists; POST creates it.");
        return TypedResults.Ok(await StoreAsync(name, body, current, user, audit, feed, time, ct));
    }

    private static async Task<NoContent> DeleteAsync(
        string name, CurrentUser user, ToolRegistry registry, AuditChain audit, ChangeFeed feed, TimeProvider time, CancellationToken ct)
    {
        var current = await registry.FindAsync(user.TenantId, name, ct)
            ?? throw new HarnessProblemException(StatusCodes.Status404NotFound, "tool_not_found", $"No tool named '{name}' exists.");
        if (current.Kind == ToolKind.Builtin)
        {
            throw new HarnessProblemException(StatusCodes.Status409Conflict, "builtin_tool",
                $"'{name}' is a built-in tool; disable it with PUT {{ \"enabled\": false }} instead.");
        }

        await AppendVersionAsync(audit, feed, user, current, new ToolRegistration
        {
            TenantId = user.TenantId, Name = name, Description = current.Description,
            Schema = JsonDocument.Parse(current.Schema.GetRawText()), Kind = current.Kind, Argv = current.Argv?.ToArray(),
            Enabled = false, Deleted = true, ChangedBy = user.UserId, ChangedAt = time.GetUtcNow(),
        }, "tool.deleted", ct);
        return TypedResults.NoContent();
    }

    private static async Task<ToolView> StoreAsync(
        string name, ToolBody body, ToolDefinition? current, CurrentUser user, AuditChain audit, ChangeFeed feed, TimeProvider time, CancellationToken ct)
    {
        var registration = Validate(name, body, current, user, time);
        var version = await AppendVersionAsync(audit, feed, user, current, registration, current is null ? "tool.created" : "tool.changed", ct);
        return ToolView.Of(new ToolDefinition(registration.Name, registration.Description, registration.Schema.RootElement,
            registration.Kind, registration.Argv, registration.Enabled, version));
    }

    /// <summary>Stores the next version of a tool with its audit event and returns the version number.</summary>
    private static async Task<int> AppendVersionAsync(
        AuditChain audit, ChangeFeed feed, CurrentUser user, ToolDefinition? current, ToolRegistration next, string type, CancellationToken ct)
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
                throw new HarnessProblemException(StatusCodes.Status409Conflict, "tool_changed", $"Tool '{next.Name}' changed concurrently; retry.");
            }

            ChangeFeed.Notify(unit, ToolRegistry.ChangeKind, user.TenantId);
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
        static HarnessProblemException Invalid(string detail) => new(StatusCodes.Status400BadRequest, "invalid_tool", detail);

        if (!NamePattern().IsMatch(name))
        {
            throw Invalid($"Tool name '{name}' must match {NamePattern()} (lowercase letters, digits, '.', '_', '-').");
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
        if (argv.Count == 0 || argv.Count > 256 || string.IsNullOrWhiteSpace(argv[0]) || Placeholder().IsMatch(argv[0]))
        {
            throw Invalid("'argv' must start with a fixed program name (not a placeholder) and have at most 256 entries.");
        }

        var properties = schema.TryGetProperty("properties", out var p) && p.ValueKind == JsonValueKind.Object
            ? p.EnumerateObject().Select(x => x.Name).ToHashSet(StringComparer.Ordinal)
            : [];
        foreach (var entry in argv)
        {
            // A placeholder is a whole argv entry, replaced by one argument value: never spliced into text.
            if (entry.Contains('{', StringComparison.Ordinal) && !Placeholder().IsMatch(entry))
            {
                throw Invalid($"argv entry '{entry}' mixes text and a placeholder; a placeholder must be a whole entry like \"{{path}}\".");
            }

            if (Placeholder().Match(entry) is { Success: true } m && !properties.Contains(m.Groups[1].Value))
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

    [GeneratedRegex("^\\{([A-Za-z_][A-Za-z0-9_]*)\\}$")]
    internal static partial Regex Placeholder();
}

internal sealed record ToolBody(string? Name, string? Description, JsonElement? Schema, string? Kind, IReadOnlyList<string>? Argv, bool? Enabled);

internal sealed record ToolList(IReadOnlyList<ToolView> Tools);

internal sealed record ToolView(string Name, string Description, JsonElement Schema, string Kind, IReadOnlyList<string>? Argv, bool Enabled, int Version)
{
    public static ToolView Of(ToolDefinition t) => new(t.Name, t.Description, t.Schema, t.Kind.ToString().ToLowerInvariant(), t.Argv, t.Enabled, t.Version);
}
