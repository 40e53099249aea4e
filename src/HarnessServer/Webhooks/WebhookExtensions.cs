using HarnessServer.Audit;
using Microsoft.Extensions.Options;

namespace HarnessServer.Webhooks;

internal static class WebhookExtensions
{
    /// <summary>Tenants' outbound webhooks: their administration, the secret key, the outbox dispatcher.</summary>
    public static WebApplicationBuilder AddHarnessWebhooks(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<WebhookOptions>().BindConfiguration("Harness:Webhooks")
            .Validate(o => o.PollInterval > TimeSpan.Zero && o.InitialBackoff > TimeSpan.Zero && o.MaxBackoff >= o.InitialBackoff
                           && o.Timeout > TimeSpan.Zero && o.MaxAttempts is >= 1 and <= 100,
                "Harness:Webhooks: PollInterval, InitialBackoff and Timeout must be positive, MaxBackoff at least InitialBackoff, MaxAttempts 1 to 100.")
            .Validate(o => o.AllowedNetworks.All(n => System.Net.IPNetwork.TryParse(n, out _)),
                "Harness:Webhooks:AllowedNetworks holds a network that is not CIDR (such as 10.0.0.0/8).")
            .ValidateOnStart();
        services.AddSingleton(provider =>
        {
            var options = provider.GetRequiredService<IOptions<WebhookOptions>>().Value;
            return WebhookUrl.For(options, provider.GetRequiredService<IHostEnvironment>().IsDevelopment());
        });
        services.AddSingleton(provider =>
        {
            var environment = provider.GetRequiredService<IHostEnvironment>();
            var configured = provider.GetRequiredService<IOptions<WebhookOptions>>().Value.SecretKeyPath;
            var beside = Path.GetDirectoryName(provider.GetRequiredService<IOptions<AuditOptions>>().Value.SigningKeyPath) ?? "";
            var path = string.IsNullOrWhiteSpace(configured) ? Path.Combine(beside, "webhook-secret.key") : configured;
            return WebhookSecrets.Load(Path.Combine(environment.ContentRootPath, path));
        });
        services.AddScoped<WebhookAdministration>();
        services.AddHostedService<WebhookDispatcher>();
        return builder;
    }
}
