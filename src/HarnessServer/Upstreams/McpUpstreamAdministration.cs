using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Sandbox;
using HarnessServer.Tools;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using ModelContextProtocol.Protocol;
using Npgsql;

namespace HarnessServer.Upstreams;

/// <summary>
/// Admins register upstream MCP servers; their tools enter the tenant's registry as <c>mcp.&lt;server&gt;.&lt;tool&gt;</c>
/// (kind <see cref="ToolKind.Mcp"/>), so policies, argument constraints, approvals and audit apply as to any tool.
/// What an upstream says about its tools is untrusted: names are mapped to registry names, descriptions cut to
/// <see cref="UpstreamLimits.MaxDescription"/>, oversized or non-object schemas refused, and everything is shown to the
/// admin in the answer. A later change to a registered tool (or a new tool) is held as a <see cref="McpToolChange"/>
/// until an admin approves it; every step is audited.
/// </summary>
internal sealed partial class McpUpstreamAdministration(
    HarnessDbContext db,
    AuditChain audit,
    ChangeFeed feed,
    ToolRegistry registry,
    McpUpstreamClient client,
    UpstreamCredentials credentials,
    WorkspaceRoot workspaces,
    TenantSandboxUsers sandboxUsers,
    IOptions<UpstreamOptions> options,
    TimeProvider time)
{
    public const string ToolPrefix = "mcp.";

    public async Task<IReadOnlyList<McpServerView>> ListAsync(CancellationToken cancellationToken)
    {
        var upstreams = await db.McpUpstreams.AsNoTracking().OrderBy(u => u.Name).ToListAsync(cancellationToken);
        var views = new List<McpServerView>();
        foreach (var upstream in upstreams)
        {
            views.Add(await ViewAsync(upstream, [], cancellationToken));
        }

        return views;
    }

    public async Task<McpServerView> GetAsync(string name, CancellationToken cancellationToken) =>
        await ViewAsync(await FindAsync(name, cancellationToken), [], cancellationToken);

    /// <summary>Registers a server after listing its tools; 400 when it cannot be reached or named nothing usable.</summary>
    public async Task<McpServerView> RegisterAsync(CurrentUser user, McpServerBody body, CancellationToken cancellationToken)
    {
        var upstream = Validate(user, body);
        if (await db.McpUpstreams.AnyAsync(u => u.Name == upstream.Name, cancellationToken))
        {
            throw new HarnessError(ErrorKind.Conflict, "mcp_server_exists", $"An MCP server named '{upstream.Name}' is already registered.");
        }

        var (offered, refused) = await OfferedAsync(upstream, cancellationToken);
        foreach (var tool in offered)
        {
            // A leftover of an earlier server of this name is replaced; anything else of the name is not.
            if (await registry.FindAsync(user.TenantId, tool.Name, cancellationToken) is { Kind: not ToolKind.Mcp })
            {
                throw new HarnessError(ErrorKind.Conflict, "tool_exists", $"The registry already has a tool named '{tool.Name}' that is not this server's.");
            }
        }

        await audit.AppendAsync(user.TenantId, async (unit, ct) =>
        {
            unit.Db.McpUpstreams.Add(upstream);
            try
            {
                await unit.Db.SaveChangesAsync(ct);
            }
            catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
            {
                throw new HarnessError(ErrorKind.Conflict, "mcp_server_exists", $"An MCP server named '{upstream.Name}' is already registered.");
            }

            foreach (var tool in offered)
            {
                await AddVersionAsync(unit.Db, user, tool.Name, upstream.Name, tool.UpstreamName, tool.Description, tool.Schema, deleted: false, ct);
            }

            unit.NotifyChange(ToolRegistry.ChangeKind, user.TenantId);
            return (true, (IReadOnlyList<AuditEntry>)[new AuditEntry("mcp_server.registered", Actor(user), Payload: new JsonObject
            {
                ["name"] = upstream.Name,
                ["transport"] = upstream.Transport.ToString().ToLowerInvariant(),
                ["url"] = upstream.Url,
                ["command"] = upstream.Command is { } command ? new JsonArray([.. command.Select(c => JsonValue.Create(c))]) : null,
                ["credential"] = upstream.ProtectedCredential is not null,
                ["tools"] = new JsonArray([.. offered.Select(t => (JsonNode)new JsonObject { ["name"] = t.Name, ["digest"] = Digest(t.Description, t.Schema) })]),
                ["refused"] = JsonSerializer.SerializeToNode(refused, JsonSerializerOptions.Web),
            })]);
        }, cancellationToken);
        feed.Publish(ToolRegistry.ChangeKind, user.TenantId);
        return await ViewAsync(upstream, refused, cancellationToken);
    }

    /// <summary>
    /// Lists the server's tools again. A tool whose description or schema now differs from the registered one, and a
    /// tool the server added, is held for an admin; the registry keeps the approved version until then.
    /// </summary>
    public async Task<McpServerView> RefreshAsync(CurrentUser user, string name, CancellationToken cancellationToken)
    {
        var upstream = await FindAsync(name, cancellationToken);
        var (offered, refused) = await OfferedAsync(upstream, cancellationToken);
        var current = (await registry.ListAsync(user.TenantId, cancellationToken))
            .Where(t => t.Kind == ToolKind.Mcp && t.Argv is [var server, _] && server == upstream.Name)
            .ToDictionary(t => t.Name, StringComparer.Ordinal);
        var now = time.GetUtcNow();
        await audit.AppendAsync(user.TenantId, async (unit, ct) =>
        {
            var held = await unit.Db.McpToolChanges.Where(c => c.Server == upstream.Name).ToDictionaryAsync(c => c.Tool, ct);
            var events = new List<AuditEntry>();
            foreach (var tool in offered)
            {
                var registered = current.GetValueOrDefault(tool.Name);
                var digest = Digest(tool.Description, tool.Schema);
                if (registered is not null && Digest(registered.Description, registered.Schema) == digest)
                {
                    if (held.Remove(tool.Name, out var stale))
                    {
                        unit.Db.McpToolChanges.Remove(stale);
                    }

                    continue;
                }

                if (held.Remove(tool.Name, out var existing))
                {
                    if (Digest(existing.Description, existing.Schema.RootElement) == digest)
                    {
                        continue;
                    }

                    // Changed again while held: the admin is shown what the server says now.
                    existing.Description = tool.Description;
                    existing.Schema = JsonDocument.Parse(tool.Schema.GetRawText());
                    existing.IsNew = registered is null;
                    existing.DetectedAt = now;
                }
                else
                {
                    unit.Db.McpToolChanges.Add(new McpToolChange
                    {
                        TenantId = user.TenantId, Tool = tool.Name, Server = upstream.Name, UpstreamName = tool.UpstreamName,
                        Description = tool.Description, Schema = JsonDocument.Parse(tool.Schema.GetRawText()), IsNew = registered is null, DetectedAt = now,
                    });
                }

                events.Add(new AuditEntry("mcp_server.tool_change_held", Actor(user), Tool: tool.Name, Payload: new JsonObject
                {
                    ["server"] = upstream.Name,
                    ["new"] = registered is null,
                    ["beforeDigest"] = registered is null ? null : Digest(registered.Description, registered.Schema),
                    ["afterDigest"] = digest,
                    ["description"] = tool.Description,
                }));
            }

            await unit.Db.McpUpstreams.Where(u => u.Name == upstream.Name)
                .ExecuteUpdateAsync(u => u.SetProperty(x => x.RefreshedAt, now), ct);
            await unit.Db.SaveChangesAsync(ct);
            events.Add(new AuditEntry("mcp_server.refreshed", Actor(user), Payload: new JsonObject
            {
                ["name"] = upstream.Name,
                ["held"] = events.Count,
                ["refused"] = JsonSerializer.SerializeToNode(refused, JsonSerializerOptions.Web),
            }));
            return (true, (IReadOnlyList<AuditEntry>)events);
        }, cancellationToken);
        return await ViewAsync(upstream, refused, cancellationToken);
    }

    /// <summary>Puts a held change into force: the registry's next version of the tool has the new description and schema.</summary>
    public async Task<McpServerView> ApproveChangeAsync(CurrentUser user, string name, string tool, CancellationToken cancellationToken)
    {
        var upstream = await FindAsync(name, cancellationToken);
        await audit.AppendAsync(user.TenantId, async (unit, ct) =>
        {
            var change = await unit.Db.McpToolChanges.FirstOrDefaultAsync(c => c.Server == upstream.Name && c.Tool == tool, ct)
                ?? throw new HarnessError(ErrorKind.NotFound, "change_not_found", $"No change of '{tool}' is held for MCP server '{upstream.Name}'.");
            await AddVersionAsync(unit.Db, user, change.Tool, upstream.Name, change.UpstreamName, change.Description, change.Schema.RootElement, deleted: false, ct);
            unit.Db.McpToolChanges.Remove(change);
            await unit.Db.SaveChangesAsync(ct);
            unit.NotifyChange(ToolRegistry.ChangeKind, user.TenantId);
            return (true, (IReadOnlyList<AuditEntry>)[new AuditEntry("mcp_server.tool_change_approved", Actor(user), Tool: change.Tool, Payload: new JsonObject
            {
                ["server"] = upstream.Name,
                ["new"] = change.IsNew,
                ["digest"] = Digest(change.Description, change.Schema.RootElement),
            })]);
        }, cancellationToken);
        feed.Publish(ToolRegistry.ChangeKind, user.TenantId);
        return await ViewAsync(upstream, [], cancellationToken);
    }

    /// <summary>Removes the server and its tools from the registry (each as a deleted version, so history stays).</summary>
    public async Task DeleteAsync(CurrentUser user, string name, CancellationToken cancellationToken)
    {
        var upstream = await FindAsync(name, cancellationToken);
        var tools = (await registry.ListAsync(user.TenantId, cancellationToken))
            .Where(t => t.Kind == ToolKind.Mcp && t.Argv is [var server, _] && server == upstream.Name).ToList();
        await audit.AppendAsync(user.TenantId, async (unit, ct) =>
        {
            foreach (var tool in tools)
            {
                await AddVersionAsync(unit.Db, user, tool.Name, upstream.Name, tool.Argv![1], tool.Description, tool.Schema, deleted: true, ct);
            }

            await unit.Db.McpUpstreams.Where(u => u.Name == upstream.Name).ExecuteDeleteAsync(ct);
            unit.NotifyChange(ToolRegistry.ChangeKind, user.TenantId);
            return (true, (IReadOnlyList<AuditEntry>)[new AuditEntry("mcp_server.deleted", Actor(user), Payload: new JsonObject
            {
                ["name"] = upstream.Name,
                ["tools"] = new JsonArray([.. tools.Select(t => JsonValue.Create(t.Name))]),
            })]);
        }, cancellationToken);
        feed.Publish(ToolRegistry.ChangeKind, user.TenantId);
    }

    private async Task<McpUpstream> FindAsync(string name, CancellationToken cancellationToken) =>
        await db.McpUpstreams.AsNoTracking().FirstOrDefaultAsync(u => u.Name == name, cancellationToken)
        ?? throw new HarnessError(ErrorKind.NotFound, "mcp_server_not_found", $"No MCP server named '{name}' is registered.");

    // The upstream's tools as the registry would hold them, and those it cannot hold, with why.
    private async Task<(List<OfferedTool> Offered, List<RefusedTool> Refused)> OfferedAsync(McpUpstream upstream, CancellationToken cancellationToken)
    {
        IReadOnlyList<Tool>? tools;
        string? error;
        if (upstream.Transport == McpTransport.Stdio)
        {
            // Listing happens outside any session: the server runs in a scratch workspace that is removed afterwards.
            var user = await sandboxUsers.OfAsync(upstream.TenantId, cancellationToken);
            var scratch = $"mcp-{Guid.NewGuid():N}";
            string path;
            using (var workspace = workspaces.Create(upstream.TenantId, scratch, user))
            {
                path = workspace.FullPath;
            }

            try
            {
                (tools, error) = await client.ListToolsAsync(upstream, new SandboxPlace(path, user), cancellationToken);
            }
            finally
            {
                Directory.Delete(path, recursive: true);
            }
        }
        else
        {
            (tools, error) = await client.ListToolsAsync(upstream, null, cancellationToken);
        }

        if (tools is null)
        {
            throw new HarnessError(ErrorKind.Invalid, "mcp_server_unreachable", $"MCP server '{upstream.Name}' could not list its tools: {error}");
        }

        var offered = new List<OfferedTool>();
        var refused = new List<RefusedTool>();
        foreach (var tool in tools.Take(UpstreamLimits.MaxTools))
        {
            var upstreamName = tool.Name ?? "";
            var reason = RefusalOf(tool, upstreamName);
            var name = ToolPrefix + upstream.Name + "." + Unsafe().Replace(upstreamName.ToLowerInvariant(), "_");
            if (reason is null && offered.Any(o => o.Name == name))
            {
                reason = $"its registry name '{name}' is taken by another tool of this server";
            }

            if (reason is null && name.Length > 100)
            {
                reason = $"its registry name '{name}' is longer than 100 characters";
            }

            if (reason is not null)
            {
                refused.Add(new RefusedTool(Cut(upstreamName, UpstreamLimits.UpstreamToolName), reason));
                continue;
            }

            var description = tool.Description ?? "";
            offered.Add(new OfferedTool(name, upstreamName,
                description.Length > UpstreamLimits.MaxDescription ? description[..(UpstreamLimits.MaxDescription - 6)] + " [cut]" : description,
                tool.InputSchema.Clone()));
        }

        if (tools.Count > UpstreamLimits.MaxTools)
        {
            refused.Add(new RefusedTool("*", $"the server offers {tools.Count} tools; only the first {UpstreamLimits.MaxTools} are considered"));
        }

        return (offered, refused);
    }

    private static string? RefusalOf(Tool tool, string name)
    {
        if (name.Length is 0 or > UpstreamLimits.UpstreamToolName || !UpstreamToolName().IsMatch(name))
        {
            return $"its name must be 1-{UpstreamLimits.UpstreamToolName} letters, digits, '_', '-' or '.'";
        }

        var schema = tool.InputSchema;
        if (schema.ValueKind != JsonValueKind.Object || !schema.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "object")
        {
            return "its input schema is not an object schema";
        }

        if (System.Text.Encoding.UTF8.GetByteCount(schema.GetRawText()) > UpstreamLimits.MaxSchemaBytes)
        {
            return $"its input schema is larger than {UpstreamLimits.MaxSchemaBytes} bytes";
        }

        if (ToolArguments.Unrecordable(schema) is [var unrecordable, ..])
        {
            return $"its input schema cannot be stored: {unrecordable.Path}: {unrecordable.Reason}";
        }

        if (tool.Description is { } description && Http.StorableText.Problem(description) is { } problem)
        {
            return $"its description cannot be stored: {problem}";
        }

        try
        {
            _ = Json.Schema.JsonSchema.Build(schema);
        }
        catch (Exception e) when (e is Json.Schema.JsonSchemaException or JsonException or ArgumentException or InvalidOperationException)
        {
            return $"its input schema cannot be used: {e.Message}";
        }

        return null;
    }

    private McpUpstream Validate(CurrentUser user, McpServerBody body)
    {
        static HarnessError Invalid(string detail) => new(ErrorKind.Invalid, "invalid_mcp_server", detail);

        if (body.Name is not { } name || !ServerName().IsMatch(name))
        {
            throw Invalid("'name' must match ^[a-z][a-z0-9-]{0,39}$: its tools are named mcp.<name>.<tool>.");
        }

        var timeout = body.TimeoutSeconds ?? options.Value.DefaultTimeoutSeconds;
        if (timeout < 1 || timeout > options.Value.MaxTimeoutSeconds)
        {
            throw Invalid($"'timeoutSeconds' must be between 1 and {options.Value.MaxTimeoutSeconds}.");
        }

        var transport = body.Transport?.ToLowerInvariant() switch
        {
            "http" => McpTransport.Http,
            "stdio" => McpTransport.Stdio,
            _ => throw Invalid("'transport' must be 'http' (Streamable HTTP at 'url') or 'stdio' ('command' run in the sandbox)."),
        };

        var upstream = new McpUpstream
        {
            TenantId = user.TenantId, Name = name, Transport = transport, TimeoutSeconds = timeout,
            CreatedBy = user.UserId, CreatedAt = time.GetUtcNow(),
        };
        if (transport == McpTransport.Http)
        {
            if (body.Command is not null)
            {
                throw Invalid("An http server has a 'url', not a 'command'.");
            }

            if (!Uri.TryCreate(body.Url, UriKind.Absolute, out var url) || url.Scheme is not ("https" or "http")
                || !string.IsNullOrEmpty(url.UserInfo) || !string.IsNullOrEmpty(url.Fragment) || body.Url!.Length > 2048)
            {
                throw Invalid("'url' must be an absolute http(s) URL without user info or fragment, at most 2048 characters.");
            }

            upstream.Url = url.ToString();
            if (body.Credential is { } credential)
            {
                // The header value is sent as is: line breaks or NUL would split or end the header.
                if (credential.Length is 0 or > 4096 || credential.Any(c => c is '\r' or '\n' or '\0'))
                {
                    throw Invalid("'credential' is the Authorization header value sent upstream (e.g. \"Bearer ...\"): 1-4096 characters, one line.");
                }

                upstream.ProtectedCredential = credentials.Protect(user.TenantId, name, credential);
            }
        }
        else
        {
            if (body.Url is not null || body.Credential is not null)
            {
                throw Invalid("A stdio server has a 'command' only: it runs in the sandbox with no network, so it has no URL or credential.");
            }

            if (body.Command is not { Count: > 0 and <= 64 } command || string.IsNullOrWhiteSpace(command[0])
                || command.Any(c => c is null || c.Contains('\0') || c.Length > 65_536))
            {
                throw Invalid("'command' must be the program and its arguments (1-64 entries, no NUL), e.g. [\"node\", \"server.js\"].");
            }

            upstream.Command = [.. command];
        }

        return upstream;
    }

    private async Task AddVersionAsync(
        HarnessDbContext unitDb, CurrentUser user, string name, string server, string upstreamName, string description, JsonElement schema, bool deleted, CancellationToken ct)
    {
        var newest = await unitDb.ToolRegistrations.Where(t => t.Name == name).MaxAsync(t => (int?)t.Version, ct) ?? 0;
        unitDb.ToolRegistrations.Add(new ToolRegistration
        {
            TenantId = user.TenantId, Name = name, Version = newest + 1, Description = description,
            Schema = JsonDocument.Parse(schema.GetRawText()), Kind = ToolKind.Mcp, Argv = [server, upstreamName],
            Enabled = !deleted, Deleted = deleted, ChangedBy = user.UserId, ChangedAt = time.GetUtcNow(),
        });
        await unitDb.SaveChangesAsync(ct);
    }

    private async Task<McpServerView> ViewAsync(McpUpstream upstream, IReadOnlyList<RefusedTool> refused, CancellationToken cancellationToken)
    {
        var tools = (await registry.ListAsync(upstream.TenantId, cancellationToken))
            .Where(t => t.Kind == ToolKind.Mcp && t.Argv is [var server, _] && server == upstream.Name)
            .OrderBy(t => t.Name, StringComparer.Ordinal)
            .Select(t => new McpServerToolView(t.Name, t.Argv![1], t.Description, t.Schema))
            .ToList();
        var held = await db.McpToolChanges.AsNoTracking().Where(c => c.Server == upstream.Name).OrderBy(c => c.Tool).ToListAsync(cancellationToken);
        return new McpServerView(
            upstream.Name, upstream.Transport.ToString().ToLowerInvariant(), upstream.Url, upstream.Command, upstream.ProtectedCredential is not null,
            upstream.TimeoutSeconds, tools,
            [.. held.Select(c => new McpToolChangeView(c.Tool, c.UpstreamName, c.IsNew, c.Description, c.Schema.RootElement.Clone(), c.DetectedAt))],
            refused);
    }

    // Over the description and the canonical schema: what agents are told and what arguments pass.
    private static string Digest(string description, JsonElement schema) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(CanonicalJson.Serialize(new JsonObject
        {
            ["description"] = description,
            ["schema"] = JsonNode.Parse(schema.GetRawText()),
        })));

    private static string Cut(string text, int length) => text.Length <= length ? text : text[..length];

    private static AuditActor Actor(CurrentUser user) => new(user.UserId, user.DisplayName);

    [GeneratedRegex("^[a-z][a-z0-9-]{0,39}$")]
    private static partial Regex ServerName();

    [GeneratedRegex("^[A-Za-z0-9_.-]+$")]
    private static partial Regex UpstreamToolName();

    [GeneratedRegex("[^a-z0-9_-]")]
    private static partial Regex Unsafe();

    private sealed record OfferedTool(string Name, string UpstreamName, string Description, JsonElement Schema);
}

/// <summary>The body of <c>POST /v1/admin/mcp-servers</c>.</summary>
internal sealed record McpServerBody(string? Name, string? Transport, string? Url, IReadOnlyList<string>? Command, string? Credential, int? TimeoutSeconds);

/// <summary>A tool of the server the registry could not take, and why.</summary>
internal sealed record RefusedTool(string UpstreamName, string Reason);

/// <summary>A registered server as admins see it: its tools in force, the changes held for approval. Never the credential.</summary>
internal sealed record McpServerView(
    string Name, string Transport, string? Url, IReadOnlyList<string>? Command, bool Credential, int TimeoutSeconds,
    IReadOnlyList<McpServerToolView> Tools, IReadOnlyList<McpToolChangeView> Held, IReadOnlyList<RefusedTool> Refused);

internal sealed record McpServerToolView(string Name, string UpstreamName, string Description, JsonElement Schema);

internal sealed record McpToolChangeView(string Name, string UpstreamName, bool IsNew, string Description, JsonElement Schema, DateTimeOffset DetectedAt);
