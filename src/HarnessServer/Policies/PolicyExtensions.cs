namespace HarnessServer.Policies;

internal static class PolicyExtensions
{
    /// <summary>Stored policy versions with their compiled matrices, and the import of the policy folder.</summary>
    public static WebApplicationBuilder AddHarnessPolicies(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<PolicyOptions>().BindConfiguration("Harness");
        services.AddSingleton<PolicyService>();
        services.AddSingleton<PolicyDrafts>();
        services.AddHostedService<PolicyFileImporter>();
        return builder;
    }
}
