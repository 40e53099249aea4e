using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Data;

internal sealed class TenantConfiguration : IEntityTypeConfiguration<Tenant>
{
    public void Configure(EntityTypeBuilder<Tenant> builder)
    {
        builder.HasKey(t => t.Id);
        builder.Property(t => t.Id).HasMaxLength(Limits.Identifier);
    }
}

internal sealed class UserConfiguration : IEntityTypeConfiguration<User>
{
    public void Configure(EntityTypeBuilder<User> builder)
    {
        builder.HasKey(u => new { u.TenantId, u.Id });
        builder.Property(u => u.TenantId).HasMaxLength(Limits.Identifier);
        builder.Property(u => u.Id).HasMaxLength(Limits.Identifier);
        builder.Property(u => u.DisplayName).HasMaxLength(Limits.DisplayName);
        builder.HasOne<Tenant>().WithMany().HasForeignKey(u => u.TenantId);
    }
}

internal sealed class TeamConfiguration : IEntityTypeConfiguration<Team>
{
    public void Configure(EntityTypeBuilder<Team> builder)
    {
        builder.HasKey(t => new { t.TenantId, t.Name });
        builder.Property(t => t.TenantId).HasMaxLength(Limits.Identifier);
        builder.Property(t => t.Name).HasMaxLength(Limits.Identifier);
        builder.HasOne<Tenant>().WithMany().HasForeignKey(t => t.TenantId);
    }
}

internal sealed class TeamMembershipConfiguration : IEntityTypeConfiguration<TeamMembership>
{
    public void Configure(EntityTypeBuilder<TeamMembership> builder)
    {
        builder.HasKey(m => new { m.TenantId, m.TeamName, m.UserId });
        builder.Property(m => m.TenantId).HasMaxLength(Limits.Identifier);
        builder.Property(m => m.TeamName).HasMaxLength(Limits.Identifier);
        builder.Property(m => m.UserId).HasMaxLength(Limits.Identifier);
        builder.HasIndex(m => new { m.TenantId, m.UserId });
        builder.HasOne<Team>().WithMany().HasForeignKey(m => new { m.TenantId, m.TeamName });
        builder.HasOne<User>().WithMany().HasForeignKey(m => new { m.TenantId, m.UserId });
    }
}

/// <summary>Column sizes shared by every configuration.</summary>
internal static class Limits
{
    public const int Identifier = 200;
    public const int DisplayName = 400;
}
