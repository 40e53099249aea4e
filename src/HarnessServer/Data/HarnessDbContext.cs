using System.Linq.Expressions;
using HarnessServer.Tenancy;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Data;

/// <summary>
/// The one DbContext. Every <see cref="ITenantOwned"/> entity gets a global query filter on the scope's tenant, and
/// every write is stamped with (and checked against) that tenant, so tenant scoping holds by construction.
/// </summary>
internal sealed class HarnessDbContext(DbContextOptions<HarnessDbContext> options, TenantContext tenant) : DbContext(options)
{
    /// <summary>Read by the query filters at query time; EF Core parameterises it per query.</summary>
    internal string CurrentTenantId => tenant.TenantId;

    public DbSet<Tenant> Tenants => Set<Tenant>();
    public DbSet<User> Users => Set<User>();
    public DbSet<Team> Teams => Set<Team>();
    public DbSet<TeamMembership> TeamMemberships => Set<TeamMembership>();

    // Each feature's tables are that folder's extension properties (Sessions.SessionTables, ...), and their
    // configurations are found in the assembly: the context knows no feature, so every feature may depend on Data.

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.HasPostgresExtension("vector");
        modelBuilder.HasSequence<long>(TenantConfiguration.SandboxIndexSequence).StartsAt(0).HasMin(0);
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(HarnessDbContext).Assembly);

        foreach (var entity in modelBuilder.Model.GetEntityTypes())
        {
            if (typeof(ITenantOwned).IsAssignableFrom(entity.ClrType))
            {
                modelBuilder.Entity(entity.ClrType).HasQueryFilter(TenantFilter(entity.ClrType));
                // EF Core updates and deletes a tracked row by its key (and concurrency tokens) alone; where the key
                // lacks the tenant, the token puts tenant_id into that WHERE, so every write names the tenant
                // (docs/sharding.md, held by Data/TenantStatementTests).
                if (entity.FindPrimaryKey()?.Properties.All(p => p.Name != nameof(ITenantOwned.TenantId)) ?? false)
                {
                    modelBuilder.Entity(entity.ClrType).Property(nameof(ITenantOwned.TenantId)).IsConcurrencyToken();
                }
            }
        }
    }

    public override int SaveChanges(bool acceptAllChangesOnSuccess)
    {
        StampTenant();
        return base.SaveChanges(acceptAllChangesOnSuccess);
    }

    public override Task<int> SaveChangesAsync(bool acceptAllChangesOnSuccess, CancellationToken cancellationToken = default)
    {
        StampTenant();
        return base.SaveChangesAsync(acceptAllChangesOnSuccess, cancellationToken);
    }

    private void StampTenant()
    {
        foreach (var entry in ChangeTracker.Entries<ITenantOwned>())
        {
            if (entry.State == EntityState.Added && string.IsNullOrEmpty(entry.Entity.TenantId))
            {
                entry.Entity.TenantId = CurrentTenantId;
            }
            else if (entry.State is EntityState.Added or EntityState.Modified or EntityState.Deleted
                     && entry.Entity.TenantId != CurrentTenantId)
            {
                throw new InvalidOperationException(
                    $"Refusing to write a {entry.Metadata.ClrType.Name} of another tenant.");
            }
        }
    }

    // e => e.TenantId == this.CurrentTenantId, built per entity type.
    private LambdaExpression TenantFilter(Type type)
    {
        var e = Expression.Parameter(type, "e");
        var body = Expression.Equal(
            Expression.Property(e, nameof(ITenantOwned.TenantId)),
            Expression.Property(Expression.Constant(this), nameof(CurrentTenantId)));
        return Expression.Lambda(body, e);
    }
}
