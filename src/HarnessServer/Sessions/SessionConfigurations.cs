using HarnessServer.Data;
using HarnessServer.Sessions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Sessions;

/// <summary>The tables of this folder as sets of the one <see cref="HarnessDbContext"/>.</summary>
internal static class SessionTables
{
    extension(HarnessDbContext db)
    {
        public DbSet<Session> Sessions => db.Set<Session>();
        public DbSet<ToolCall> ToolCalls => db.Set<ToolCall>();
        public DbSet<WorkspaceCheckpoint> WorkspaceCheckpoints => db.Set<WorkspaceCheckpoint>();
    }
}

internal sealed class SessionConfiguration : IEntityTypeConfiguration<Session>
{
    public void Configure(EntityTypeBuilder<Session> builder)
    {
        builder.ToTable("sessions");
        builder.HasKey(s => s.Id);
        builder.Property(s => s.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(s => s.OwnerUserId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(s => s.OwnerName).HasMaxLength(ColumnLimits.DisplayName);
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
        builder.Property(c => c.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.RequestedBy).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.RequestedByName).HasMaxLength(ColumnLimits.DisplayName);
        builder.Property(c => c.Tool).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.ToolDigest).HasMaxLength(64);
        builder.Property(c => c.Status).HasConversion<string>().HasMaxLength(20);
        builder.HasIndex(c => new { c.TenantId, c.SessionId, c.CreatedAt });
        builder.HasOne<Session>().WithMany().HasForeignKey(c => c.SessionId).OnDelete(DeleteBehavior.Cascade);
        // Only tools that touch no workspace run outside a session (BuiltInTools.OutsideSessions); the database says so too.
        builder.ToTable("tool_calls", t => t.HasCheckConstraint("ck_tool_calls_outside_session",
            $"session_id IS NOT NULL OR tool IN ({string.Join(", ", Tools.BuiltInTools.OutsideSessions.Order(StringComparer.Ordinal).Select(n => $"'{n}'"))})"));
    }
}

internal sealed class WorkspaceCheckpointConfiguration : IEntityTypeConfiguration<WorkspaceCheckpoint>
{
    public void Configure(EntityTypeBuilder<WorkspaceCheckpoint> builder)
    {
        builder.ToTable("workspace_checkpoints");
        builder.HasKey(c => c.Id);
        builder.Property(c => c.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.Tool).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.TreeHash).HasMaxLength(64).IsFixedLength();
        builder.HasIndex(c => new { c.TenantId, c.SessionId, c.CreatedAt });
        builder.HasOne<Session>().WithMany().HasForeignKey(c => c.SessionId);
        builder.HasOne<ToolCall>().WithMany().HasForeignKey(c => c.ToolCallId);
    }
}
