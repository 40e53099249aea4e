using HarnessServer.Tenancy;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace HarnessServer.Data;

internal static class DataExtensions
{
    /// <summary>The database role the application runs as: it may insert audit events but never change them.</summary>
    public const string ApplicationRole = "harness_app";

    public static WebApplicationBuilder AddHarnessData(this WebApplicationBuilder builder)
    {
        var connectionString = PrimaryOfMultipleHosts(ResolveConnectionString(builder));

        // The owner's connection string (the schema owner's login) is only for migrations: the migrator opens it at
        // start and closes it; the server's own connections log in with ConnectionStrings:Harness. Without it, the
        // one connection string serves both, and the restricted role does not bind (SET ROLE NONE returns to the owner).
        var migrations = builder.Configuration.GetConnectionString("HarnessMigrations");
        var migrationLogin = string.IsNullOrWhiteSpace(migrations) ? connectionString : PrimaryOfMultipleHosts(migrations);

        // The role is a startup option rather than a SET ROLE on open: the pool's DISCARD ALL on every return resets
        // a SET ROLE to the login user (the owner), but resets a startup option only back to itself.
        var application = new NpgsqlDataSourceBuilder(connectionString);
        application.ConnectionStringBuilder.Options = $"{application.ConnectionStringBuilder.Options} -c role={ApplicationRole}".Trim();
        application.UseVector();
        PrepareRepeatedStatements(application);
        var applicationSource = application.Build();

        // Session locks (Pipeline.SessionGate) as the same role on connections that are never reset: they carry no
        // session state besides the lock, which the gate releases itself, so the pool's DISCARD ALL would only add a
        // statement to every call.
        var locks = new NpgsqlDataSourceBuilder(connectionString);
        locks.ConnectionStringBuilder.Options = application.ConnectionStringBuilder.Options;
        locks.ConnectionStringBuilder.NoResetOnClose = true;
        PrepareRepeatedStatements(locks);
        var locksSource = locks.Build();

        builder.Services.AddSingleton(new DatabaseSources(applicationSource, locksSource));
        builder.Services.AddSingleton(new MigrationLogin(migrationLogin, SeparateFromApplication: !string.IsNullOrWhiteSpace(migrations)));
        builder.Services.AddSingleton(applicationSource);
        builder.Services.AddScoped<TenantContext>();
        builder.Services.AddDbContext<HarnessDbContext>(options => Configure(options, applicationSource));
        builder.Services.AddSingleton<TenantDbContextFactory>();

        builder.Services.AddOptions<DatabaseOptions>().BindConfiguration("Harness");
        builder.Services.AddSingleton<DatabaseMigrator>();
        builder.Services.AddHostedService(services => services.GetRequiredService<DatabaseMigrator>());

        // Clears the pools when a request or a background service meets a database fault (a primary switch).
        builder.Services.AddSingleton<DatabaseFailover>();
        builder.Services.AddHostedService(services => services.GetRequiredService<DatabaseFailover>());

        // Tells every process when a tenant's policies, tools or sessions changed (LISTEN/NOTIFY).
        builder.Services.AddSingleton<ChangeFeed>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ChangeFeed>());
        return builder;
    }

    public static void Configure(DbContextOptionsBuilder options, NpgsqlDataSource source) =>
        options.UseNpgsql(source, ConfigureNpgsql).UseSnakeCaseNamingConvention();

    public static void ConfigureNpgsql(Npgsql.EntityFrameworkCore.PostgreSQL.Infrastructure.NpgsqlDbContextOptionsBuilder npgsql) =>
        npgsql.UseVector().MigrationsHistoryTable("__ef_migrations_history");

    // Every tool call repeats the same few statements (the session lock, the call's row, the audit batch); prepared
    // once per connection, PostgreSQL stops parsing and planning them per call. A connection string can still say
    // otherwise.
    private static void PrepareRepeatedStatements(NpgsqlDataSourceBuilder source)
    {
        if (source.ConnectionStringBuilder.MaxAutoPrepare == 0)
        {
            source.ConnectionStringBuilder.MaxAutoPrepare = 64;
        }
    }

    /// <summary>
    /// A connection string naming several hosts (<c>Host=a:5432,b:5432</c>, a Patroni or other HA pair) connects to
    /// the one that is the primary unless it says otherwise: Npgsql's default, any host, would send writes to a
    /// standby that refuses them. An explicit <c>Target Session Attributes</c> is kept.
    /// </summary>
    internal static string PrimaryOfMultipleHosts(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (builder.Host?.Contains(',', StringComparison.Ordinal) != true || !string.IsNullOrEmpty(builder.TargetSessionAttributes))
        {
            return connectionString;
        }

        builder.TargetSessionAttributes = "primary";
        return builder.ConnectionString;
    }

    // Outside Development the connection string is required. In Development the default is the local cluster that
    // scripts/local-postgres.sh provisions under .data/postgres (it records its port there).
    private static string ResolveConnectionString(WebApplicationBuilder builder)
    {
        var configured = builder.Configuration.GetConnectionString("Harness");
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return configured;
        }

        var portFile = Path.Combine(builder.Environment.ContentRootPath, ".data", "postgres", "harness.port");
        if (builder.Environment.IsDevelopment() && File.Exists(portFile))
        {
            return $"Host=127.0.0.1;Port={File.ReadAllText(portFile).Trim()};Database=harness;Username=postgres";
        }

        throw new InvalidOperationException(
            "ConnectionStrings:Harness is not set. Set it to a PostgreSQL database with pgvector, or start the " +
            "server in Development with scripts/run.sh, which provisions a local cluster.");
    }
}

/// <summary>
/// The restricted application connection, and the application role's connections for session locks, which are never
/// reset on reuse. Both log in with <c>ConnectionStrings:Harness</c>.
/// </summary>
internal sealed record DatabaseSources(NpgsqlDataSource Application, NpgsqlDataSource SessionLocks);

/// <summary>
/// The schema owner's connection string, used by <see cref="DatabaseMigrator"/> at start and by nothing else; no pool
/// of it stays open. <paramref name="SeparateFromApplication"/> when <c>ConnectionStrings:HarnessMigrations</c> is set.
/// </summary>
internal sealed record MigrationLogin(string ConnectionString, bool SeparateFromApplication)
{
    public override string ToString() => nameof(MigrationLogin);
}

internal sealed class DatabaseOptions
{
    public bool? MigrateOnStart { get; set; }
}
