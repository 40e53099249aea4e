using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Policies;

/// <summary>The tables of this folder as sets of the one <see cref="HarnessDbContext"/>.</summary>
internal static class PolicyTables
{
    extension(HarnessDbContext db)
    {
        public DbSet<PolicyVersion> PolicyVersions => db.Set<PolicyVersion>();
    }
}

internal sealed class PolicyVersionConfiguration : IEntityTypeConfiguration<PolicyVersion>
{
    public void Configure(EntityTypeBuilder<PolicyVersion> builder)
    {
        builder.ToTable("policy_versions");
        // The key makes a lost update impossible: two writers of the same next version cannot both commit.
        builder.HasKey(p => new { p.TenantId, p.LevelKey, p.Version });
        builder.Property(p => p.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(p => p.LevelKey).HasMaxLength(ColumnLimits.Identifier + 10);
        builder.Property(p => p.ContentHash).HasMaxLength(64);
        builder.Property(p => p.Origin).HasMaxLength(10);
        builder.Property(p => p.ChangedBy).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(p => p.ChangedByName).HasMaxLength(ColumnLimits.DisplayName);
        builder.HasOne<Tenant>().WithMany().HasForeignKey(p => p.TenantId);
    }
}
