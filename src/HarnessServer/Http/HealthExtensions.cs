using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using Scalar.AspNetCore;

namespace HarnessServer.Http;

internal static class HealthExtensions
{
    public const string ReadyTag = "ready";

    public static IHealthChecksBuilder AddHarnessHealth(this IServiceCollection services) =>
        services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database", tags: [ReadyTag]);

    public static WebApplication MapHarnessHealth(this WebApplication app)
    {
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteAsync })
            .AllowAnonymous();
        app.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = c => c.Tags.Contains(ReadyTag), ResponseWriter = WriteAsync })
            .AllowAnonymous();
        return app;
    }

    public static WebApplication MapHarnessApiReference(this WebApplication app)
    {
        app.MapOpenApi().AllowAnonymous();
        // On in Development, elsewhere only when Harness:ApiReference:Enabled says so. Self-hosted and possibly
        // air-gapped: the page loads its script from this server (the package's embedded bundle, CdnUrl left at its
        // local default) and no web fonts from the vendor's hosts (tests/.../Http/ApiReferencePageTests.cs).
        if (app.Configuration.GetValue<bool?>("Harness:ApiReference:Enabled") ?? app.Environment.IsDevelopment())
        {
            app.MapScalarApiReference(options => options.DisableDefaultFonts()).AllowAnonymous();
        }

        return app;
    }

    private static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        var body = new
        {
            status = report.Status.ToString().ToLowerInvariant(),
            checks = report.Entries.ToDictionary(e => e.Key, e => new
            {
                status = e.Value.Status.ToString().ToLowerInvariant(),
                description = e.Value.Description,
            }),
        };
        return context.Response.WriteAsync(JsonSerializer.Serialize(body, JsonSerializerOptions.Web));
    }
}

/// <summary>Ready when the database answers as the application role and pgvector is installed.</summary>
internal sealed class DatabaseHealthCheck(NpgsqlDataSource dataSource) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await using var command = dataSource.CreateCommand("SELECT extversion FROM pg_extension WHERE extname = 'vector'");
            var version = await command.ExecuteScalarAsync(cancellationToken);
            return version is string v
                ? HealthCheckResult.Healthy($"PostgreSQL reachable, pgvector {v}.")
                : HealthCheckResult.Unhealthy("PostgreSQL reachable, but the vector extension is not installed.");
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            return HealthCheckResult.Unhealthy($"PostgreSQL unreachable: {e.Message}");
        }
    }
}
