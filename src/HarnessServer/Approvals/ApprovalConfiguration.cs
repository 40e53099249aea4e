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

        public DbSet<ApprovalVote> ApprovalVotes => db.Set<ApprovalVote>();
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
        builder.Property(a => a.Comment).HasMaxLength(ApprovalService.MaxComment);
        builder.Property(a => a.Preview).HasColumnType("jsonb");
        builder.Property(a => a.Status).HasConversion<string>().HasMaxLength(20);
        // Approvals asked before rules could route keep the default: any approver of the requester's teams, once.
        builder.Property(a => a.Quorum).HasDefaultValue(1).HasSentinel(0);
        builder.Property(a => a.Version).IsRowVersion();
        builder.HasIndex(a => new { a.TenantId, a.Status, a.CreatedAt });
        // The executor's queue: approved and not yet run.
        builder.HasIndex(a => a.DecidedAt).HasFilter("status = 'Approved' AND executed_at IS NULL");
        // Constraint names are the ones the migrations created (the naming convention would derive another from the order
        // in which the folders' configurations are applied).
        builder.HasOne<ToolCall>().WithMany().HasForeignKey(a => a.ToolCallId).HasConstraintName("fk_approvals_tool_calls_tool_call_id");
    }
}

internal sealed class ApprovalVoteConfiguration : IEntityTypeConfiguration<ApprovalVote>
{
    public void Configure(EntityTypeBuilder<ApprovalVote> builder)
    {
        builder.ToTable("approval_votes");
        // One vote per approver and approval: a second approve by the same person cannot count twice.
        builder.HasKey(v => new { v.ApprovalId, v.Approver });
        builder.Property(v => v.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(v => v.Approver).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(v => v.ApproverName).HasMaxLength(ColumnLimits.DisplayName);
        builder.Property(v => v.Comment).HasMaxLength(ApprovalService.MaxComment);
        builder.HasOne<Approval>().WithMany().HasForeignKey(v => v.ApprovalId).OnDelete(DeleteBehavior.Cascade);
    }
}
