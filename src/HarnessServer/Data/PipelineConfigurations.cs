using HarnessServer.Approvals;
using HarnessServer.Pipeline;
using HarnessServer.Sessions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Data;

internal sealed class SessionConfiguration : IEntityTypeConfiguration<Session>
{
    public void Configure(EntityTypeBuilder<Session> builder)
    {
        builder.HasKey(s => s.Id);
        builder.Property(s => s.TenantId).HasMaxLength(Limits.Identifier);
        builder.Property(s => s.OwnerUserId).HasMaxLength(Limits.Identifier);
        builder.Property(s => s.OwnerName).HasMaxLength(Limits.DisplayName);
        builder.Property(s => s.Status).HasConversion<string>().HasMaxLength(20);
        builder.Property(s => s.Version).IsRowVersion();
        builder.HasIndex(s => new { s.TenantId, s.OwnerUserId });
        builder.HasOne<Tenant>().WithMany().HasForeignKey(s => s.TenantId);
    }
}

internal sealed class ToolCallConfiguration : IEntityTypeConfiguration<ToolCall>
{
    public void Configure(EntityTypeBuilder<ToolCall> builder)
    {
        builder.HasKey(c => c.Id);
        builder.Property(c => c.TenantId).HasMaxLength(Limits.Identifier);
        builder.Property(c => c.RequestedBy).HasMaxLength(Limits.Identifier);
        builder.Property(c => c.RequestedByName).HasMaxLength(Limits.DisplayName);
        builder.Property(c => c.Tool).HasMaxLength(Limits.Identifier);
        builder.Property(c => c.ToolDigest).HasMaxLength(64);
        builder.Property(c => c.Status).HasConversion<string>().HasMaxLength(20);
        builder.HasIndex(c => new { c.TenantId, c.SessionId, c.CreatedAt });
        builder.HasOne<Session>().WithMany().HasForeignKey(c => c.SessionId).OnDelete(DeleteBehavior.Cascade);
        // Only tools that touch no workspace run outside a session (BuiltInTools.OutsideSessions); the database says so too.
        builder.ToTable(t => t.HasCheckConstraint("ck_tool_calls_outside_session",
            $"session_id IS NOT NULL OR tool IN ({string.Join(", ", Tools.BuiltInTools.OutsideSessions.Order(StringComparer.Ordinal).Select(n => $"'{n}'"))})"));
    }
}

internal sealed class ApprovalConfiguration : IEntityTypeConfiguration<Approval>
{
    public void Configure(EntityTypeBuilder<Approval> builder)
    {
        builder.HasKey(a => a.Id);
        builder.Property(a => a.TenantId).HasMaxLength(Limits.Identifier);
        builder.Property(a => a.RequestedBy).HasMaxLength(Limits.Identifier);
        builder.Property(a => a.Tool).HasMaxLength(Limits.Identifier);
        builder.Property(a => a.Reason).HasMaxLength(2000);
        builder.Property(a => a.DecidedBy).HasMaxLength(Limits.Identifier);
        builder.Property(a => a.DecidedByName).HasMaxLength(Limits.DisplayName);
        builder.Property(a => a.Comment).HasMaxLength(4000);
        builder.Property(a => a.Status).HasConversion<string>().HasMaxLength(20);
        builder.Property(a => a.Version).IsRowVersion();
        builder.HasIndex(a => new { a.TenantId, a.Status, a.CreatedAt });
        // The executor's queue: approved and not yet run.
        builder.HasIndex(a => a.DecidedAt).HasFilter("status = 'Approved' AND executed_at IS NULL");
        builder.HasOne<ToolCall>().WithMany().HasForeignKey(a => a.ToolCallId);
    }
}
