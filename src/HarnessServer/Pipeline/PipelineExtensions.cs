namespace HarnessServer.Pipeline;

internal static class PipelineExtensions
{
    /// <summary>
    /// The tool-call pipeline: its steps (<see cref="ToolCallPipeline"/> lists their order), the executors
    /// of allowed calls, the per-session gate, the durable executor of approved calls and the recovery of interrupted ones.
    /// </summary>
    public static WebApplicationBuilder AddHarnessPipeline(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddScoped<ResolveToolStep>();
        services.AddScoped<ValidateArgumentsStep>();
        services.AddScoped<DecideStep>();
        services.AddScoped<CheckpointStep>();
        services.AddScoped<CommitDecisionStep>();
        services.AddScoped<ExecuteStep>();
        services.AddScoped<RecordResultStep>();
        services.AddScoped<ToolExecutors>();
        services.AddSingleton<WorkspaceQuotaGuard>();
        services.AddScoped<ToolCallPipeline>();
        services.AddSingleton<SessionGate>();
        services.AddSingleton<CallLeases>();

        services.AddOptions<RecoveryOptions>().BindConfiguration("Harness:Recovery")
            .Validate(o => o.SweepInterval > TimeSpan.Zero, "Harness:Recovery:SweepInterval must be positive.")
            .Validate(o => o.LeaseDuration >= TimeSpan.FromSeconds(1), "Harness:Recovery:LeaseDuration must be at least a second.")
            .Validate(o => o.LeaseRetryInterval > TimeSpan.Zero, "Harness:Recovery:LeaseRetryInterval must be positive.")
            .ValidateOnStart();
        services.AddSingleton<ApprovedCallExecutor>();
        services.AddHostedService(sp => sp.GetRequiredService<ApprovedCallExecutor>());
        services.AddHostedService<InterruptedCallRecovery>();
        return builder;
    }
}
