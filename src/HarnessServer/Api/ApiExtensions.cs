namespace HarnessServer.Api;

/// <summary>The HTTP API: every route of the contract and its extensions, mapped onto the services below it.</summary>
internal static class ApiExtensions
{
    /// <summary>Services that exist only for a route: the memory routes' held requests.</summary>
    public static WebApplicationBuilder AddHarnessApi(this WebApplicationBuilder builder)
    {
        builder.Services.AddScoped<MemoryRequests>();
        return builder;
    }

    public static IEndpointRouteBuilder MapHarnessApi(this IEndpointRouteBuilder app)
    {
        app.MapIdentity();
        app.MapAudit();
        app.MapPolicies();
        app.MapTools();
        app.MapSessions();
        app.MapApprovals();
        app.MapAgents();
        app.MapMemory();
        app.MapWebhooks();
        app.MapMcpServers();
        return app;
    }
}
