namespace HarnessServer.Sessions;

internal static class SessionExtensions
{
    /// <summary>Sessions and their stored tool calls, the live event stream, and workspace checkpoints.</summary>
    public static WebApplicationBuilder AddHarnessSessions(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddSingleton<SessionEvents>();
        services.AddScoped<SessionService>();
        services.AddSingleton<WorkspaceCheckpoints>();
        return builder;
    }
}
