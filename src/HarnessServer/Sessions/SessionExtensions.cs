namespace HarnessServer.Sessions;

internal static class SessionExtensions
{
    /// <summary>Sessions and their stored tool calls, the live event stream, and workspace checkpoints with their collection.</summary>
    public static WebApplicationBuilder AddHarnessSessions(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddSingleton<SessionEvents>();
        services.AddScoped<SessionService>();
        services.AddSingleton<WorkspaceCheckpoints>();
        services.AddOptions<CheckpointOptions>().BindConfiguration("Harness:Checkpoints").ValidateOnStart()
            .Validate(o => o.CollectInterval > TimeSpan.Zero && o.KeepPerSession >= 0,
                "Harness:Checkpoints:CollectInterval must be positive and KeepPerSession at least 0 (0 keeps every checkpoint).");
        services.AddSingleton<CheckpointCollector>();
        services.AddHostedService(sp => sp.GetRequiredService<CheckpointCollector>());
        return builder;
    }
}
