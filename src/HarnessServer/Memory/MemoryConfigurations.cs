using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Memory;

internal sealed class MemoryItemConfiguration : IEntityTypeConfiguration<MemoryItem>
{
    public void Configure(EntityTypeBuilder<MemoryItem> builder)
    {
        builder.ToTable("memory_items");
        builder.HasKey(i => i.Id);
        builder.Property(i => i.TenantId).HasMaxLength(ColumnLimits.Identifier);
        // 'session:' or 'user:' plus an identifier.
        builder.Property(i => i.Namespace).HasMaxLength(ColumnLimits.Identifier + 8);
        builder.Property(i => i.OwnerUserId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(i => i.AuthorId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(i => i.AuthorName).HasMaxLength(ColumnLimits.DisplayName);
        builder.Property(i => i.Metadata).HasColumnType("jsonb");
        builder.Property(i => i.Embedding).HasColumnType($"vector({MemoryItem.EmbeddingDimensions})");
        builder.Property(i => i.EmbeddingModel).HasMaxLength(ColumnLimits.Identifier);
        builder.HasOne<Tenant>().WithMany().HasForeignKey(i => i.TenantId);

        // Serves the namespace filter of searches (exact scans of small namespaces), keyset listing and deletes.
        builder.HasIndex(i => new { i.TenantId, i.Namespace, i.Id });
        // Finds items an earlier embedding model made, so re-embedding never scans a tenant that is up to date.
        builder.HasIndex(i => new { i.TenantId, i.EmbeddingModel });
        // English stems ("passwords" finds "password"); identifiers, file names and numbers stay whole lexemes. The
        // GIN index finds matching rows; the (tenant, namespace) btree narrows them to the namespace.
        builder.HasGeneratedTsVectorColumn(i => i.SearchVector, "english", i => new { i.Content });
        builder.HasIndex(i => i.SearchVector).HasMethod("gin");
        builder.HasIndex(i => i.Embedding)
            .HasMethod("hnsw")
            .HasOperators("vector_cosine_ops")
            .HasStorageParameter("m", MemoryItem.HnswM)
            .HasStorageParameter("ef_construction", MemoryItem.HnswEfConstruction);
    }
}
