using HarnessServer.Data;
using HarnessServer.Sessions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Approvals;

internal static class ApprovalTables
{
    extension(HarnessDbContext db)
    {
        public DbSet<Approval> Approvals => db.Set<Approval>();
    }
}

internal sealed class ApprovalConfiguration : IEntityTypeConfiguration<Approval>
{
    public void Configure(EntityTypeBuilder<Approval> builder)
    {
        builder.ToTable("approvals");
        builder.HasKey(a => a.Id);
        builder.Property(a => a.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(a => a.RequestedBy).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(a => a.Tool).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(a => a.Reason).HasMaxLength(2000);
        builder.Property(a => a.DecidedBy).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(a => a.DecidedByName).HasMaxLength(ColumnLimits.DisplayName);
        builder.Property(a => a.Comment).HasMaxLength(4000);
        builder.Property(a => a.Preview).HasColumnType("jsonb");
        builder.Property(a => a.Status).HasConversion<string>().HasMaxLength(20);
        builder.Property(a => a.Version).IsRowVersion();
        builder.HasIndex(a => new { a.TenantId, a.Status, a.CreatedAt });
        // The executor's queue: approved and not yet run.
        builder.HasIndex(a => a.DecidedAt).HasFilter("status = 'Approved' AND executed_at IS NULL");
        // Constraint names are the ones the migrations created (the naming convention would derive another from the order
        // in which the folders' configurations are applied).
        builder.HasOne<ToolCall>().WithMany().HasForeignKey(a => a.ToolCallId).HasConstraintName("fk_approvals_tool_calls_tool_call_id");
    }
}
