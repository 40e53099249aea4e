using HarnessServer.Approvals;
using HarnessServer.Data;
using HarnessServer.Policies;
using HarnessServer.Sessions;
using HarnessServer.Tools;

namespace HarnessServer.Pipeline;

internal static class PipelineExtensions
{
    /// <summary>Policies, the tool registry, sessions, approvals and the tool-call pipeline that ties them together.</summary>
    public static WebApplicationBuilder AddHarnessPipeline(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddSingleton<ChangeFeed>();
        services.AddHostedService(sp => sp.GetRequiredService<ChangeFeed>());

        services.AddOptions<PolicyOptions>().BindConfiguration("Harness");
        services.AddSingleton<PolicyService>();
        services.AddHostedService<PolicyFileImporter>();

        services.AddSingleton<ToolRegistry>();
        services.AddOptions<HttpFetchOptions>().BindConfiguration("Harness:HttpFetch")
            .Validate(o => o.MaxResponseBytes > 0 && o.TimeoutSeconds > 0 && o.MaxRedirects >= 0, "Harness:HttpFetch limits must be positive.")
            .ValidateOnStart();
        services.AddSingleton<HttpFetchAllowList>();
        services.AddSingleton<HttpFetchTool>();
        services.AddScoped<ToolExecutors>();

        services.AddOptions<RecoveryOptions>().BindConfiguration("Harness:Recovery")
            .Validate(o => o.SweepInterval > TimeSpan.Zero, "Harness:Recovery:SweepInterval must be positive.")
            .ValidateOnStart();
        services.AddOptions<ApprovalOptions>().BindConfiguration("Harness:Approvals")
            .Validate(o => o.Expiry > TimeSpan.Zero && o.PollInterval > TimeSpan.Zero, "Harness:Approvals:Expiry and :PollInterval must be positive.")
            .ValidateOnStart();
        services.AddSingleton<ApprovedCallExecutor>();
        services.AddHostedService(sp => sp.GetRequiredService<ApprovedCallExecutor>());
        services.AddScoped<ApprovalService>();

        services.AddSingleton<SessionGate>();
        services.AddSingleton<SessionEvents>();
        services.AddScoped<SessionService>();

        // The stages of one call, in the order their Order properties declare.
        services.AddScoped<IToolCallStep, ResolveToolStep>();
        services.AddScoped<IToolCallStep, ValidateArgumentsStep>();
        services.AddScoped<IToolCallStep, DecideStep>();
        services.AddScoped<IToolCallStep, CommitDecisionStep>();
        services.AddScoped<IToolCallStep, ExecuteStep>();
        services.AddScoped<IToolCallStep, RecordResultStep>();
        services.AddScoped<ToolCallPipeline>();
        services.AddHostedService<InterruptedCallRecovery>();
        return builder;
    }

    public static IEndpointRouteBuilder MapHarnessPipeline(this IEndpointRouteBuilder app)
    {
        app.MapPolicies();
        app.MapTools();
        app.MapSessions();
        app.MapApprovals();
        return app;
    }
}
