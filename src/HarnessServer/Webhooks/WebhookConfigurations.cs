using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Webhooks;

/// <summary>The tables of this folder as sets of the one <see cref="HarnessDbContext"/>.</summary>
internal static class WebhookTables
{
    extension(HarnessDbContext db)
    {
        public DbSet<TenantWebhook> TenantWebhooks => db.Set<TenantWebhook>();
        public DbSet<WebhookDelivery> WebhookDeliveries => db.Set<WebhookDelivery>();
        public DbSet<WebhookAttempt> WebhookAttempts => db.Set<WebhookAttempt>();
    }
}

internal sealed class TenantWebhookConfiguration : IEntityTypeConfiguration<TenantWebhook>
{
    public void Configure(EntityTypeBuilder<TenantWebhook> builder)
    {
        builder.ToTable("tenant_webhooks");
        builder.HasKey(w => w.TenantId);
        builder.Property(w => w.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(w => w.Url).HasMaxLength(WebhookUrl.MaxLength);
        builder.Property(w => w.UpdatedBy).HasMaxLength(ColumnLimits.Identifier);
        builder.HasOne<Tenant>().WithMany().HasForeignKey(w => w.TenantId);
    }
}

internal sealed class WebhookDeliveryConfiguration : IEntityTypeConfiguration<WebhookDelivery>
{
    public void Configure(EntityTypeBuilder<WebhookDelivery> builder)
    {
        builder.ToTable("webhook_deliveries");
        builder.HasKey(d => d.Id);
        builder.Property(d => d.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(d => d.Event).HasMaxLength(64);
        builder.Property(d => d.Status).HasConversion<string>().HasMaxLength(20);
        builder.Property(d => d.LastError).HasMaxLength(WebhookAttemptConfiguration.MaxError);
        // The dispatcher's queue: pending deliveries by when they are due.
        builder.HasIndex(d => d.NextAttemptAt).HasFilter("status = 'Pending'");
        // The admins' log, newest first.
        builder.HasIndex(d => new { d.TenantId, d.CreatedAt });
    }
}

internal sealed class WebhookAttemptConfiguration : IEntityTypeConfiguration<WebhookAttempt>
{
    public const int MaxError = 1000;

    public void Configure(EntityTypeBuilder<WebhookAttempt> builder)
    {
        builder.ToTable("webhook_attempts");
        builder.HasKey(a => new { a.DeliveryId, a.Attempt });
        builder.Property(a => a.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(a => a.Error).HasMaxLength(MaxError);
        builder.HasOne<WebhookDelivery>().WithMany().HasForeignKey(a => a.DeliveryId).OnDelete(DeleteBehavior.Cascade);
    }
}
