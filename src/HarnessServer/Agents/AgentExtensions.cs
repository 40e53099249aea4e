using Microsoft.SemanticKernel;

namespace HarnessServer.Agents;

internal static class AgentExtensions
{
    /// <summary>The model client, and agent turns with their recovery.</summary>
    public static WebApplicationBuilder AddHarnessAgents(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<ModelOptions>().BindConfiguration("Harness:Model")
            .Validate(o => !o.IsConfigured || Uri.TryCreate(o.Endpoint, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https",
                "Harness:Model:Endpoint must be an absolute http(s) URL.")
            .Validate(o => !string.IsNullOrWhiteSpace(o.Id), "Harness:Model:Id must name a model.")
            .ValidateOnStart();
        services.AddOptions<AgentOptions>().BindConfiguration("Harness:Agent")
            .Validate(o => o.MaxIterations is > 0 and <= 1000, "Harness:Agent:MaxIterations must be 1-1000.")
            .Validate(o => o.ContextTokenBudget >= 500, "Harness:Agent:ContextTokenBudget must be at least 500.")
            .Validate(o => o.CompactAt is > 0 and <= 1, "Harness:Agent:CompactAt must be a fraction in (0, 1].")
            .Validate(o => o.RecentTurns >= 1, "Harness:Agent:RecentTurns must be at least 1.")
            .Validate(o => o.RecoveryInterval > TimeSpan.Zero, "Harness:Agent:RecoveryInterval must be positive.")
            .Validate(o => o.MemoryItems is >= 1 and <= AgentSettingsService.MaxMemoryItems,
                $"Harness:Agent:MemoryItems must be 1-{AgentSettingsService.MaxMemoryItems}.")
            .ValidateOnStart();

        // Retries 429, 5xx and timeouts with exponential backoff, with a circuit breaker and per-attempt timeout.
        services.AddHttpClient(AgentModel.HttpClientName).AddStandardResilienceHandler(o =>
        {
            // A model call can take minutes for long answers; the defaults (10 s per attempt) would cut it off.
            o.AttemptTimeout.Timeout = TimeSpan.FromMinutes(3);
            o.TotalRequestTimeout.Timeout = TimeSpan.FromMinutes(10);
            o.CircuitBreaker.SamplingDuration = TimeSpan.FromMinutes(6);
        });
        services.AddSingleton<AgentModel>();
        services.AddSingleton<TurnLock>();
        services.AddScoped<ContextWindow>();
        services.AddScoped<AgentTurns>();
        services.AddScoped<AgentSettingsService>();
        services.AddScoped<MemoryRecall>();
        services.AddScoped<SessionRollback>();

        // The kernel of agent turns: its one function-invocation filter runs every tool function through the pipeline.
        services.AddScoped<IFunctionInvocationFilter, PipelineFunctionFilter>();
        services.AddKernel();
        services.AddSingleton<TurnRecovery>();
        services.AddHostedService(sp => sp.GetRequiredService<TurnRecovery>());
        return builder;
    }
}
