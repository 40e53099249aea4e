using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Tools;

/// <summary>The tables of this folder as sets of the one <see cref="HarnessDbContext"/>.</summary>
internal static class ToolTables
{
    extension(HarnessDbContext db)
    {
        public DbSet<ToolRegistration> ToolRegistrations => db.Set<ToolRegistration>();
        public DbSet<HttpFetchDomains> HttpFetchDomains => db.Set<HttpFetchDomains>();
    }
}

internal sealed class ToolRegistrationConfiguration : IEntityTypeConfiguration<ToolRegistration>
{
    public void Configure(EntityTypeBuilder<ToolRegistration> builder)
    {
        builder.ToTable("tool_registrations");
        builder.ToTable("tool_registrations");
        builder.HasKey(t => new { t.TenantId, t.Name, t.Version });
        builder.Property(t => t.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(t => t.Name).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(t => t.Description).HasMaxLength(4000);
        builder.Property(t => t.Kind).HasConversion<string>().HasMaxLength(20);
        builder.Property(t => t.ChangedBy).HasMaxLength(ColumnLimits.Identifier);
        builder.HasOne<Tenant>().WithMany().HasForeignKey(t => t.TenantId);
    }
}

internal sealed class HttpFetchDomainsConfiguration : IEntityTypeConfiguration<Tools.HttpFetchDomains>
{
    public void Configure(EntityTypeBuilder<Tools.HttpFetchDomains> builder)
    {
        builder.ToTable("http_fetch_domains");
        builder.HasKey(d => d.TenantId);
        builder.Property(d => d.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(d => d.UpdatedBy).HasMaxLength(ColumnLimits.Identifier);
    }
}
