using HarnessServer.Tenancy;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace HarnessServer.Data;

/// <summary>
/// Makes a <see cref="HarnessDbContext"/> bound to one tenant, for work that is not a request: caches loading a
/// tenant's policies or tools, background passes, the audit writer's units of work. The context's query filters and
/// write checks see only that tenant, exactly as a request's context does; the caller disposes it.
/// </summary>
internal sealed class TenantDbContextFactory(NpgsqlDataSource application)
{
    private readonly DbContextOptions<HarnessDbContext> _options = Options(o => DataExtensions.Configure(o, application));

    /// <summary>A context of <paramref name="tenantId"/> on the application's pooled connections.</summary>
    public HarnessDbContext Create(string tenantId) => new(_options, TenantContext.For(tenantId));

    /// <summary>
    /// A context of <paramref name="tenantId"/> that runs inside <paramref name="transaction"/> on its connection, with
    /// EF's per-SaveChanges savepoints off (the caller already isolates each unit of work).
    /// </summary>
    public static HarnessDbContext Create(string tenantId, NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        var db = new HarnessDbContext(
            Options(o => o.UseNpgsql(connection, DataExtensions.ConfigureNpgsql).UseSnakeCaseNamingConvention()),
            TenantContext.For(tenantId));
        db.Database.UseTransaction(transaction);
        db.Database.AutoSavepointsEnabled = false;
        return db;
    }

    private static DbContextOptions<HarnessDbContext> Options(Action<DbContextOptionsBuilder<HarnessDbContext>> configure)
    {
        var builder = new DbContextOptionsBuilder<HarnessDbContext>();
        configure(builder);
        return builder.Options;
    }
}
