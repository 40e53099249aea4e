using HarnessServer.Tenancy;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Data;

/// <summary>
/// Applies pending migrations before the server accepts requests when <c>Harness:MigrateOnStart</c> is true
/// (the default in Development only), as the schema owner (<see cref="MigrationLogin"/>), whose connections are closed
/// afterwards. Then it makes sure the restricted role binds: the server's own login must be a member of
/// <c>harness_app</c> and must not be able to become the owner or anything stronger (superuser, CREATEROLE, BYPASSRLS),
/// since <c>SET ROLE NONE</c> returns a connection to its login. Outside Development a login that could is refused.
/// </summary>
internal sealed class DatabaseMigrator(
    DatabaseSources sources,
    MigrationLogin migrationLogin,
    IOptions<DatabaseOptions> options,
    IHostEnvironment environment,
    ILogger<DatabaseMigrator> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Value.MigrateOnStart ?? environment.IsDevelopment())
        {
            await MigrateAsync(cancellationToken);
        }

        await CheckApplicationLoginAsync(cancellationToken);

        // Types such as vector are loaded per connection; new extensions need the type cache refreshed.
        await using var connection = await sources.Application.OpenConnectionAsync(cancellationToken);
        await connection.ReloadTypesAsync(cancellationToken);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// <c>HarnessServer --migrate</c>: applies the migrations as the owner, checks the server's login, and exits
    /// without serving, so a deployment runs migrations once (a Kubernetes Job, a release step) and the serving
    /// replicas never hold the owner's credentials.
    /// </summary>
    public static async Task<bool> RunIfAskedAsync(WebApplication app, string[] args)
    {
        if (!args.Contains("--migrate", StringComparer.Ordinal))
        {
            return false;
        }

        await app.Services.GetRequiredService<DatabaseMigrator>().MigrateOnlyAsync(app.Lifetime.ApplicationStopping);
        return true;
    }

    private async Task MigrateOnlyAsync(CancellationToken cancellationToken)
    {
        await MigrateAsync(cancellationToken);
        await CheckApplicationLoginAsync(cancellationToken);
        logger.LogInformation("Migrations applied; exiting (--migrate).");
    }

    private async Task MigrateAsync(CancellationToken cancellationToken)
    {
        var owner = new NpgsqlDataSourceBuilder(migrationLogin.ConnectionString);
        owner.UseVector();
        // Pooling off: nothing of the owner's login outlives the migration.
        owner.ConnectionStringBuilder.Pooling = false;
        await using var ownerSource = owner.Build();
        var builder = new DbContextOptionsBuilder<HarnessDbContext>();
        DataExtensions.Configure(builder, ownerSource);
        await using (var context = new HarnessDbContext(builder.Options, new TenantContext()))
        {
            var pending = (await context.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
            if (pending.Count > 0)
            {
                logger.LogInformation("Applying {Count} migrations: {Migrations}", pending.Count, string.Join(", ", pending));
                await context.Database.MigrateAsync(cancellationToken);
            }
        }

        if (!migrationLogin.SeparateFromApplication)
        {
            return;
        }

        // The server's login gets the role's rights (and nothing else) from the owner, once.
        var login = new NpgsqlConnectionStringBuilder(sources.Application.ConnectionString).Username;
        await using var connection = await ownerSource.OpenConnectionAsync(cancellationToken);
        await using var grant = new NpgsqlCommand($"""
            DO $$ BEGIN
                IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {Literal(login)})
                   AND NOT pg_has_role({Literal(login)}, '{DataExtensions.ApplicationRole}', 'MEMBER') THEN
                    EXECUTE format('GRANT {DataExtensions.ApplicationRole} TO %I', {Literal(login)});
                END IF;
            END $$
            """, connection);
        await grant.ExecuteNonQueryAsync(cancellationToken);
    }

    private static string Literal(string? value) => "'" + (value ?? "").Replace("'", "''", StringComparison.Ordinal) + "'";

    private async Task CheckApplicationLoginAsync(CancellationToken cancellationToken)
    {
        await using var connection = await sources.Application.OpenConnectionAsync(cancellationToken);
        await using var check = new NpgsqlCommand("""
            SELECT session_user::text,
                   r.rolsuper OR r.rolcreaterole OR r.rolbypassrls,
                   EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND pg_has_role(session_user, c.relowner, 'MEMBER'))
            FROM pg_roles r WHERE r.rolname = session_user
            """, connection);
        await using var reader = await check.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var (login, privileged, owns) = (reader.GetString(0), reader.GetBoolean(1), reader.GetBoolean(2));
        if (!privileged && !owns)
        {
            return;
        }

        var problem = $"The server's database login '{login}' is {(privileged ? "a superuser or has CREATEROLE or BYPASSRLS" : "the schema owner (or may become it)")}: " +
            $"SET ROLE NONE would undo the restricted role {DataExtensions.ApplicationRole}. Give ConnectionStrings:Harness a login of its own " +
            "(CREATE ROLE harness_server LOGIN PASSWORD '...') and put the owner's login in ConnectionStrings:HarnessMigrations.";
        if (!environment.IsDevelopment())
        {
            throw new InvalidOperationException(problem);
        }

        logger.LogWarning("{Problem} Allowed in Development only.", problem);
    }
}
