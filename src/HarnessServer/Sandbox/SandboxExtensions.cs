using HarnessServer.Http;
using Microsoft.Extensions.Options;

namespace HarnessServer.Sandbox;

internal static class SandboxExtensions
{
    /// <summary>Options of <c>Harness:Sandbox</c> and <c>Harness:WorkspacesPath</c>, the workspaces, the sandbox, the workspace quota, its start-up probe and readiness checks (the sandbox; workspaces shared between replicas).</summary>
    public static WebApplicationBuilder AddHarnessSandbox(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<SandboxOptions>()
            .BindConfiguration("Harness:Sandbox")
            .ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<SandboxOptions>, SandboxOptionsValidator>();
        builder.Services.AddOptions<WorkspaceOptions>()
            .BindConfiguration("Harness")
            .Validate(o => !string.IsNullOrWhiteSpace(o.WorkspacesPath), "Harness:WorkspacesPath must name a folder.")
            .ValidateOnStart();

        builder.Services.AddSingleton<WorkspaceRoot>();
        builder.Services.AddSingleton<TenantSandboxUsers>();
        builder.Services.AddSingleton<ControlGroups>();
        builder.Services.AddSingleton<BubblewrapLauncher>();
        builder.Services.AddSingleton<BubblewrapSandbox>();
        builder.Services.AddSingleton<WorkspaceQuota>();
        builder.Services.AddSingleton<SandboxProbe>();
        builder.Services.AddHostedService(services => services.GetRequiredService<SandboxProbe>());
        builder.Services.AddHealthChecks().AddCheck<SandboxHealthCheck>("sandbox", tags: [HealthExtensions.ReadyTag]);
        builder.Services.AddOptions<WorkspaceSharingOptions>()
            .BindConfiguration("Harness:WorkspaceSharing")
            .Validate(o => o.Heartbeat > TimeSpan.Zero && o.Grace >= TimeSpan.Zero,
                "Harness:WorkspaceSharing:Heartbeat must be positive and Grace not negative.")
            .ValidateOnStart();
        builder.Services.AddSingleton<WorkspaceSharing>();
        builder.Services.AddHostedService(services => services.GetRequiredService<WorkspaceSharing>());
        builder.Services.AddHealthChecks().AddCheck<WorkspaceSharingHealthCheck>("workspaces", tags: [HealthExtensions.ReadyTag]);
        return builder;
    }
}

/// <summary>Refuses to start with limits that are missing, contradictory, or would run the sandbox as root.</summary>
internal sealed class SandboxOptionsValidator : IValidateOptions<SandboxOptions>
{
    public ValidateOptionsResult Validate(string? name, SandboxOptions options) =>
        options.Problems().ToList() is { Count: > 0 } problems ? ValidateOptionsResult.Fail(problems) : ValidateOptionsResult.Success;
}
