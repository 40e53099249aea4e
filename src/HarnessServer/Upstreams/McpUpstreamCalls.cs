using HarnessServer.Data;
using HarnessServer.Sandbox;
using HarnessServer.Tools;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Upstreams;

/// <summary>
/// The executor of <see cref="ToolKind.Mcp"/> tools, called by the pipeline's execute step once a call is validated
/// and allowed (or approved): it finds the tool's upstream and calls the upstream tool with the decided arguments.
/// A stdio upstream runs in the sandbox with the session's workspace mounted, like a command tool.
/// </summary>
internal sealed class McpUpstreamCalls(TenantDbContextFactory contexts, McpUpstreamClient client)
{
    public async Task<ToolOutcome> RunAsync(string tenant, ToolDefinition tool, System.Text.Json.JsonElement arguments, Workspace? workspace, CancellationToken cancellationToken)
    {
        if (tool.Argv is not [var server, var upstreamTool])
        {
            return ToolOutcome.Failure("not_runnable", $"'{tool.Name}' does not name its MCP server and tool.");
        }

        McpUpstream? upstream;
        await using (var db = contexts.Create(tenant))
        {
            upstream = await db.McpUpstreams.AsNoTracking().FirstOrDefaultAsync(u => u.Name == server, cancellationToken);
        }

        if (upstream is null)
        {
            return ToolOutcome.Failure("mcp_server_not_found", $"The MCP server '{server}' of '{tool.Name}' is no longer registered.");
        }

        if (upstream.Transport == McpTransport.Stdio && workspace is null)
        {
            return ToolOutcome.Failure("not_runnable", $"'{tool.Name}' runs a stdio MCP server, which needs a session's workspace.");
        }

        var place = workspace is null ? null : new SandboxPlace(workspace.FullPath, workspace.Owner);
        return await client.CallAsync(upstream, upstreamTool, arguments, upstream.Transport == McpTransport.Stdio ? place : null, cancellationToken);
    }
}
