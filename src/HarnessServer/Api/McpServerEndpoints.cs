using HarnessServer.Identity;
using HarnessServer.Upstreams;
using Microsoft.AspNetCore.Http.HttpResults;

namespace HarnessServer.Api;

/// <summary>Upstream MCP servers in the tool registry: register, list, refresh (changes are held), approve a change, delete.</summary>
internal static class McpServerEndpoints
{
    public static IEndpointRouteBuilder MapMcpServers(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/admin/mcp-servers").RequireAuthorization(HarnessPolicies.Admin).WithTags("Tools");
        group.MapGet("/", async (McpUpstreamAdministration servers, CancellationToken ct) => TypedResults.Ok(new McpServerList(await servers.ListAsync(ct))))
            .WithName("ListMcpServers").WithSummary("The tenant's upstream MCP servers, their tools in force and the changes held for approval.");
        group.MapGet("/{name}", async (string name, McpUpstreamAdministration servers, CancellationToken ct) => TypedResults.Ok(await servers.GetAsync(name, ct)))
            .WithName("GetMcpServer").WithSummary("One upstream MCP server (never its credential).");
        group.MapPost("/", RegisterAsync).WithName("RegisterMcpServer")
            .WithSummary("Register an upstream MCP server (Streamable HTTP with an encrypted credential, or stdio in the sandbox); its tools become mcp.<server>.<tool>.")
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status409Conflict);
        group.MapPost("/{name}/refresh", async (string name, CurrentUser user, McpUpstreamAdministration servers, CancellationToken ct) =>
                TypedResults.Ok(await servers.RefreshAsync(user, name, ct)))
            .WithName("RefreshMcpServer").WithSummary("List the server's tools again; a changed description or schema, or a new tool, is held until approved (audited).");
        group.MapPost("/{name}/tools/{tool}/approve", async (string name, string tool, CurrentUser user, McpUpstreamAdministration servers, CancellationToken ct) =>
                TypedResults.Ok(await servers.ApproveChangeAsync(user, name, tool, ct)))
            .WithName("ApproveMcpToolChange").WithSummary("Put a held change of an upstream tool into force (audited).");
        group.MapDelete("/{name}", async (string name, CurrentUser user, McpUpstreamAdministration servers, CancellationToken ct) =>
            {
                await servers.DeleteAsync(user, name, ct);
                return TypedResults.NoContent();
            })
            .WithName("DeleteMcpServer").WithSummary("Remove the server and its tools from the registry (audited).");
        return app;
    }

    private static async Task<Created<McpServerView>> RegisterAsync(McpServerBody body, CurrentUser user, McpUpstreamAdministration servers, CancellationToken ct)
    {
        var registered = await servers.RegisterAsync(user, body, ct);
        return TypedResults.Created($"/v1/admin/mcp-servers/{registered.Name}", registered);
    }
}

internal sealed record McpServerList(IReadOnlyList<McpServerView> Servers);
