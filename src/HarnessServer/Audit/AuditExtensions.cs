using HarnessServer.Http;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Audit;

internal static class AuditExtensions
{
    private const string MissingKey =
        "The audit signing key at Harness:Audit:SigningKeyPath does not exist. Point it at a PKCS#8 PEM file holding an ECDSA P-256 " +
        "private key (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256), or set Harness:Audit:GenerateSigningKey=true.";

    /// <summary>The chain and its writer, checkpoints with their signing key, verification and export.</summary>
    public static WebApplicationBuilder AddHarnessAudit(this WebApplicationBuilder builder)
    {
        // A production server without its signing key does not even build: a failure at host start would race the
        // teardown of the services resolved before it (the test host then reports an ObjectDisposedException).
        var configured = builder.Configuration.GetSection("Harness:Audit").Get<AuditOptions>() ?? new AuditOptions();
        if (!configured.GenerateSigningKey && !builder.Environment.IsDevelopment() && !string.IsNullOrWhiteSpace(configured.SigningKeyPath)
            && !File.Exists(Path.Combine(builder.Environment.ContentRootPath, configured.SigningKeyPath)))
        {
            throw new OptionsValidationException(nameof(AuditOptions), typeof(AuditOptions), [MissingKey]);
        }

        if (!string.IsNullOrWhiteSpace(configured.AnchorUrl) && AnchorUrlOf(configured.AnchorUrl) is null)
        {
            throw new OptionsValidationException(nameof(AuditOptions), typeof(AuditOptions),
                ["Harness:Audit:AnchorUrl must be an absolute https URL, or http to a loopback address."]);
        }

        builder.Services.AddOptions<AuditOptions>().BindConfiguration("Harness:Audit")
            .Validate(o => o.CheckpointInterval > TimeSpan.Zero, "Harness:Audit:CheckpointInterval must be positive.")
            .Validate(o => o.MaxBatchSize is >= 1 and <= 10_000, "Harness:Audit:MaxBatchSize must be between 1 and 10000.")
            .Validate(o => !string.IsNullOrWhiteSpace(o.SigningKeyPath), "Harness:Audit:SigningKeyPath must not be empty.")
            // Checked with the other options, before any background service starts, so a missing key stops start-up
            // with this message rather than racing the services that would be torn down with the host.
            .Validate<IHostEnvironment>(
                (o, environment) => o.GenerateSigningKey || environment.IsDevelopment() || File.Exists(Path.Combine(environment.ContentRootPath, o.SigningKeyPath)),
                MissingKey)
            .ValidateOnStart();

        // The key is loaded when the host starts (the checkpoint service needs it): a missing key stops start-up.
        builder.Services.AddSingleton(services =>
        {
            var options = services.GetRequiredService<IOptions<AuditOptions>>().Value;
            var environment = services.GetRequiredService<IHostEnvironment>();
            var path = Path.Combine(environment.ContentRootPath, options.SigningKeyPath);
            return AuditSigningKey.Load(path, options.GenerateSigningKey || environment.IsDevelopment());
        });
        builder.Services.AddSingleton(services =>
        {
            var options = services.GetRequiredService<IOptions<AuditOptions>>().Value;
            var root = services.GetRequiredService<IHostEnvironment>().ContentRootPath;
            return new AuditRetiredKeys(options.RetiredPublicKeyPaths.Select(p => Path.Combine(root, p)));
        });
        builder.Services.AddSingleton(services => new AuditChain(
            services.GetRequiredService<NpgsqlDataSource>(),
            services.GetRequiredService<TimeProvider>(),
            services.GetRequiredService<ILogger<AuditChain>>(),
            services.GetRequiredService<IOptions<AuditOptions>>().Value.MaxBatchSize,
            services.GetRequiredService<DatabaseFaults>()));
        builder.Services.AddHostedService(services => services.GetRequiredService<AuditChain>());
        builder.Services.AddSingleton(services =>
        {
            var path = services.GetRequiredService<IOptions<AuditOptions>>().Value.AnchorPath;
            var root = services.GetRequiredService<IHostEnvironment>().ContentRootPath;
            return new AuditAnchorFile(string.IsNullOrWhiteSpace(path) ? null : Path.Combine(root, path));
        });
        if (AnchorUrlOf(configured.AnchorUrl) is { } anchorUrl)
        {
            builder.Services.AddHttpClient(AuditAnchorPush.HttpClientName, client => client.Timeout = TimeSpan.FromSeconds(30));
            builder.Services.AddSingleton(services => new AuditAnchorPush(
                services.GetRequiredService<IHttpClientFactory>().CreateClient(AuditAnchorPush.HttpClientName), anchorUrl,
                services.GetRequiredService<IOptions<AuditOptions>>().Value.AnchorToken,
                services.GetRequiredService<NpgsqlDataSource>(), services.GetRequiredService<TimeProvider>(),
                services.GetRequiredService<ILogger<AuditAnchorPush>>()));
            builder.Services.AddHostedService(services => services.GetRequiredService<AuditAnchorPush>());
        }

        builder.Services.AddSingleton<AuditCheckpoints>();
        builder.Services.AddSingleton<AuditVerifier>();
        builder.Services.AddSingleton<AuditExport>();
        builder.Services.AddHostedService<AuditCheckpointService>();
        return builder;
    }

    /// <summary>The anchor receiver's URL when it is acceptable: absolute https, or http to a loopback address.</summary>
    internal static Uri? AnchorUrlOf(string? value) =>
        Uri.TryCreate(value, UriKind.Absolute, out var url)
        && (url.Scheme == Uri.UriSchemeHttps || (url.Scheme == Uri.UriSchemeHttp && url.IsLoopback))
            ? url
            : null;
}
