using HarnessServer.Identity;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using ModelContextProtocol.AspNetCore;
using ModelContextProtocol.Protocol;

namespace HarnessServer.Mcp;

/// <summary>
/// <c>/mcp</c>: the harness as an MCP server over Streamable HTTP, for the agents teams already run (Claude Code,
/// Codex, VS Code). Stateless, so any replica serves any request; what a call needs across requests (its session, its
/// workspace, its approval) lives in the database like every other call's.
/// </summary>
internal static class McpExtensions
{
    public static WebApplicationBuilder AddHarnessMcp(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<McpOptions>().BindConfiguration("Harness:Mcp")
            .Validate(o => o.IsValid(out _), "Harness:Mcp is invalid: Resource must be an absolute http(s) URL, ProgressInterval between 50 ms and 5 minutes.")
            .ValidateOnStart();
        builder.Services.AddHttpContextAccessor();
        builder.Services.AddScoped<McpToolCalls>();
        // After the identity's own post-configuration, so it wraps the challenge that writes the problem body.
        builder.Services.AddSingleton<IPostConfigureOptions<JwtBearerOptions>, McpProtectedResource.Challenge>();

        builder.Services.AddMcpServer(server =>
            {
                server.ServerInfo = new Implementation { Name = "HarnessServer", Version = typeof(McpExtensions).Assembly.GetName().Version?.ToString() ?? "1.0" };
                server.ServerInstructions =
                    "HarnessServer governs every tool call: each is checked against its schema and the caller's policy, may be held " +
                    "for another person's approval (the call then stays open and reports progress), runs in a sandbox, and is audited.";
            })
            .WithHttpTransport(transport => transport.SessionMode = HttpServerSessionMode.Stateless)
            .WithListToolsHandler((request, ct) => Calls(request.Services).ListAsync(request, ct))
            .WithCallToolHandler((request, ct) => Calls(request.Services).CallAsync(request, ct));
        return builder;
    }

    public static IEndpointRouteBuilder MapHarnessMcp(this IEndpointRouteBuilder app)
    {
        app.MapMcp(McpProtectedResource.Path).RequireAuthorization(HarnessPolicies.User).WithTags("MCP");
        app.MapGet(McpProtectedResource.MetadataPath, (HttpContext http, IOptions<McpOptions> options, IConfiguration configuration) =>
                TypedResults.Json(McpProtectedResource.Metadata(http, options.Value, configuration)))
            .AllowAnonymous().WithTags("MCP").WithName("GetMcpProtectedResourceMetadata")
            .WithSummary("OAuth 2.0 protected resource metadata (RFC 9728) of /mcp: the resource and the authorization server whose tokens it accepts.");
        return app;
    }

    private static McpToolCalls Calls(IServiceProvider? services) =>
        (services ?? throw new InvalidOperationException("An MCP request ran without its request's services.")).GetRequiredService<McpToolCalls>();
}
