namespace HarnessServer.Approvals;

internal static class ApprovalExtensions
{
    /// <summary>Approvals of held calls: listing and deciding them, and the signal that wakes their executor.</summary>
    public static WebApplicationBuilder AddHarnessApprovals(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<ApprovalOptions>().BindConfiguration("Harness:Approvals")
            .Validate(o => o.Expiry > TimeSpan.Zero && o.PollInterval > TimeSpan.Zero, "Harness:Approvals:Expiry and :PollInterval must be positive.")
            .ValidateOnStart();
        services.AddSingleton<ApprovalSignal>();
        services.AddScoped<ApprovalService>();
        return builder;
    }
}
