using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Data;

internal sealed class TenantConfiguration : IEntityTypeConfiguration<Tenant>
{
    public void Configure(EntityTypeBuilder<Tenant> builder)
    {
        builder.HasKey(t => t.Id);
        builder.Property(t => t.Id).HasMaxLength(ColumnLimits.Identifier);
        // Drawn from the sequence when the row is inserted (existing tenants got theirs in the migration); unique, so
        // no two tenants ever share a host user.
        builder.Property(t => t.SandboxIndex).HasDefaultValueSql($"nextval('{SandboxIndexSequence}')");
        builder.HasIndex(t => t.SandboxIndex).IsUnique();
    }

    public const string SandboxIndexSequence = "tenant_sandbox_index";

    /// <summary>
    /// Creates tenant <c>$1</c> (created at <c>$2</c>) unless it exists. Only a new tenant evaluates the sandbox_index
    /// default: <c>ON CONFLICT</c> alone would draw (and waste) a sequence value, a host user id, every time.
    /// </summary>
    public const string InsertIfNewSql = """
        INSERT INTO tenants (id, created_at) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM tenants WHERE id = $1)
        ON CONFLICT (id) DO NOTHING
        """;
}

internal sealed class UserConfiguration : IEntityTypeConfiguration<User>
{
    public void Configure(EntityTypeBuilder<User> builder)
    {
        builder.HasKey(u => new { u.TenantId, u.Id });
        builder.Property(u => u.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(u => u.Id).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(u => u.DisplayName).HasMaxLength(ColumnLimits.DisplayName);
        builder.HasOne<Tenant>().WithMany().HasForeignKey(u => u.TenantId);
    }
}

internal sealed class TeamConfiguration : IEntityTypeConfiguration<Team>
{
    public void Configure(EntityTypeBuilder<Team> builder)
    {
        builder.HasKey(t => new { t.TenantId, t.Name });
        builder.Property(t => t.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(t => t.Name).HasMaxLength(ColumnLimits.Identifier);
        builder.HasOne<Tenant>().WithMany().HasForeignKey(t => t.TenantId);
    }
}

internal sealed class TeamMembershipConfiguration : IEntityTypeConfiguration<TeamMembership>
{
    public void Configure(EntityTypeBuilder<TeamMembership> builder)
    {
        builder.HasKey(m => new { m.TenantId, m.TeamName, m.UserId });
        builder.Property(m => m.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(m => m.TeamName).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(m => m.UserId).HasMaxLength(ColumnLimits.Identifier);
        builder.HasIndex(m => new { m.TenantId, m.UserId });
        builder.HasOne<Team>().WithMany().HasForeignKey(m => new { m.TenantId, m.TeamName });
        builder.HasOne<User>().WithMany().HasForeignKey(m => new { m.TenantId, m.UserId });
    }
}

/// <summary>Column sizes shared by every configuration.</summary>
internal static class ColumnLimits
{
    public const int Identifier = 200;
    public const int DisplayName = 400;
}
