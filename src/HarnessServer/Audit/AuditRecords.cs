using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Audit;

/// <summary>
/// One row of <c>audit_events</c>, mapped for read-only LINQ queries (the tenant filter applies). Rows are written
/// only by <see cref="AuditChain"/>; the database refuses updates and deletes. <see cref="Decision"/> and
/// <see cref="Payload"/> are <c>jsonb</c> text; a SQL NULL payload means it was redacted.
/// </summary>
internal sealed class AuditEventRecord : ITenantOwned
{
    public required string TenantId { get; set; }
    public long Seq { get; init; }
    public DateTimeOffset At { get; init; }
    public required string ActorId { get; init; }
    public required string ActorName { get; init; }
    public Guid? SessionId { get; init; }
    public required string Type { get; init; }
    public string? Tool { get; init; }
    public string? Decision { get; init; }
    public string? Payload { get; init; }
    public required string PayloadHash { get; init; }
    public required string PrevHash { get; init; }
    public required string Hash { get; init; }
}

/// <summary>The last seq and hash of a tenant's chain; its row lock serialises appends across server processes.</summary>
internal sealed class AuditHeadRecord
{
    public required string TenantId { get; init; }
    public long Seq { get; init; }
    public required string Hash { get; init; }
}

/// <summary>A signed statement that a tenant's chain had <see cref="Hash"/> at <see cref="Seq"/> (insert-only).</summary>
internal sealed class AuditCheckpointRecord : ITenantOwned
{
    public required string TenantId { get; set; }
    public long Seq { get; init; }
    public required string Hash { get; init; }
    public DateTimeOffset At { get; init; }
    public required string KeyId { get; init; }
    /// <summary>Base64 of the DER (RFC 3279) ECDSA P-256 SHA-256 signature over the canonical <c>{at, hash, seq, tenant}</c>.</summary>
    public required string Signature { get; init; }
}

internal sealed class AuditEventConfiguration : IEntityTypeConfiguration<AuditEventRecord>
{
    public void Configure(EntityTypeBuilder<AuditEventRecord> builder)
    {
        builder.ToTable("audit_events");
        builder.HasKey(e => new { e.TenantId, e.Seq });
        builder.Property(e => e.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(e => e.ActorId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(e => e.ActorName).HasMaxLength(ColumnLimits.DisplayName);
        builder.Property(e => e.Type).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(e => e.Tool).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(e => e.Decision).HasColumnType("json");
        builder.Property(e => e.Payload).HasColumnType("json");
        builder.Property(e => e.PayloadHash).HasMaxLength(AuditHash.HexLength).IsFixedLength();
        builder.Property(e => e.PrevHash).HasMaxLength(AuditHash.HexLength).IsFixedLength();
        builder.Property(e => e.Hash).HasMaxLength(AuditHash.HexLength).IsFixedLength();
        // The filters of GET /v1/audit/events: a reviewer's "what did this user do", "every shell.exec", "every policy
        // change" stay an index range in a tenant of millions (bench/results/audit-query.md has the cost on inserts).
        builder.HasIndex(e => new { e.TenantId, e.ActorId, e.Seq });
        builder.HasIndex(e => new { e.TenantId, e.Tool, e.Seq });
        builder.HasIndex(e => new { e.TenantId, e.Type, e.Seq });
    }
}

internal sealed class AuditHeadConfiguration : IEntityTypeConfiguration<AuditHeadRecord>
{
    public void Configure(EntityTypeBuilder<AuditHeadRecord> builder)
    {
        builder.ToTable("audit_heads");
        builder.HasKey(h => h.TenantId);
        builder.Property(h => h.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(h => h.Hash).HasMaxLength(AuditHash.HexLength).IsFixedLength();
    }
}

internal sealed class AuditCheckpointConfiguration : IEntityTypeConfiguration<AuditCheckpointRecord>
{
    public void Configure(EntityTypeBuilder<AuditCheckpointRecord> builder)
    {
        builder.ToTable("audit_checkpoints");
        builder.HasKey(c => new { c.TenantId, c.Seq });
        builder.Property(c => c.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.Hash).HasMaxLength(AuditHash.HexLength).IsFixedLength();
        builder.Property(c => c.KeyId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.Signature).HasMaxLength(ColumnLimits.DisplayName);
    }
}
