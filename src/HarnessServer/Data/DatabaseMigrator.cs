using HarnessServer.Tenancy;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace HarnessServer.Data;

/// <summary>
/// Applies pending migrations before the server accepts requests when <c>Harness:MigrateOnStart</c> is true
/// (the default in Development only).
/// </summary>
internal sealed class DatabaseMigrator(
    DatabaseSources sources,
    IOptions<DatabaseOptions> options,
    IHostEnvironment environment,
    ILogger<DatabaseMigrator> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!(options.Value.MigrateOnStart ?? environment.IsDevelopment()))
        {
            return;
        }

        var builder = new DbContextOptionsBuilder<HarnessDbContext>();
        DataExtensions.Configure(builder, sources.Owner);
        await using var context = new HarnessDbContext(builder.Options, new TenantContext());
        var pending = (await context.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
        if (pending.Count > 0)
        {
            logger.LogInformation("Applying {Count} migrations: {Migrations}", pending.Count, string.Join(", ", pending));
            await context.Database.MigrateAsync(cancellationToken);
        }

        // Types such as vector are loaded per connection; new extensions need the type cache refreshed.
        await using var connection = await sources.Application.OpenConnectionAsync(cancellationToken);
        await connection.ReloadTypesAsync(cancellationToken);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
