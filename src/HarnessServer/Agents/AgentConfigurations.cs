using HarnessServer.Data;
using HarnessServer.Sessions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Agents;

/// <summary>The tables of this folder as sets of the one <see cref="HarnessDbContext"/>.</summary>
internal static class AgentTables
{
    extension(HarnessDbContext db)
    {
        public DbSet<AgentTurn> AgentTurns => db.Set<AgentTurn>();
        public DbSet<AgentMessage> AgentMessages => db.Set<AgentMessage>();
        public DbSet<ModelCall> ModelCalls => db.Set<ModelCall>();
        public DbSet<AgentSettings> AgentSettings => db.Set<AgentSettings>();
    }
}

internal sealed class AgentTurnConfiguration : IEntityTypeConfiguration<AgentTurn>
{
    public void Configure(EntityTypeBuilder<AgentTurn> builder)
    {
        builder.ToTable("agent_turns");
        builder.HasKey(t => t.Id);
        builder.Property(t => t.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(t => t.UserId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(t => t.UserName).HasMaxLength(ColumnLimits.DisplayName);
        builder.Property(t => t.Status).HasConversion<string>().HasMaxLength(30);
        builder.Property(t => t.LastStep).HasMaxLength(ColumnLimits.Identifier + 20);
        builder.Property(t => t.Error).HasMaxLength(4000);
        builder.Property(t => t.Version).IsRowVersion();
        builder.Ignore(t => t.IsOpen);
        builder.HasIndex(t => new { t.TenantId, t.SessionId, t.CreatedAt });
        // Recovery's queue: turns that are not finished.
        builder.HasIndex(t => t.Status).HasFilter("status IN ('Running', 'WaitingForApproval', 'Paused')");
        builder.HasOne<Session>().WithMany().HasForeignKey(t => t.SessionId).HasConstraintName("fk_agent_turns_sessions_session_id");
    }
}

internal sealed class AgentMessageConfiguration : IEntityTypeConfiguration<AgentMessage>
{
    public void Configure(EntityTypeBuilder<AgentMessage> builder)
    {
        builder.ToTable("agent_messages");
        builder.HasKey(m => m.Seq);
        builder.Property(m => m.Seq).UseIdentityByDefaultColumn();
        builder.Property(m => m.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(m => m.Role).HasMaxLength(20);
        builder.Property(m => m.ToolCalls).HasColumnType("jsonb");
        builder.Property(m => m.ToolCallId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(m => m.ToolName).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(m => m.CallStatus).HasMaxLength(30);
        builder.HasIndex(m => new { m.TenantId, m.SessionId, m.Seq });
        builder.HasOne<Session>().WithMany().HasForeignKey(m => m.SessionId).HasConstraintName("fk_agent_messages_sessions_session_id");
        builder.HasOne<AgentTurn>().WithMany().HasForeignKey(m => m.TurnId).HasConstraintName("fk_agent_messages_agent_turns_turn_id");
    }
}

internal sealed class ModelCallConfiguration : IEntityTypeConfiguration<ModelCall>
{
    public void Configure(EntityTypeBuilder<ModelCall> builder)
    {
        builder.ToTable("model_calls");
        builder.HasKey(c => c.Id);
        builder.Property(c => c.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.UserId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.Model).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.Purpose).HasMaxLength(20);
        builder.HasIndex(c => new { c.TenantId, c.SessionId });
        builder.HasIndex(c => new { c.TenantId, c.UserId, c.CreatedAt });
        builder.HasOne<Session>().WithMany().HasForeignKey(c => c.SessionId).HasConstraintName("fk_model_calls_sessions_session_id");
    }
}

internal sealed class AgentSettingsConfiguration : IEntityTypeConfiguration<AgentSettings>
{
    public void Configure(EntityTypeBuilder<AgentSettings> builder)
    {
        builder.ToTable("agent_settings");
        builder.HasKey(s => s.TenantId);
        builder.Property(s => s.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(s => s.UpdatedBy).HasMaxLength(ColumnLimits.Identifier);
    }
}
