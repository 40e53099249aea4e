using HarnessServer.Data;
using Pgvector;

namespace HarnessServer.Memory;

/// <summary>
/// One remembered piece of text with its embedding. <see cref="Namespace"/> is the storage key: <c>org</c>,
/// <c>team:&lt;name&gt;</c>, <c>user:&lt;userId&gt;</c> or <c>session:&lt;id&gt;</c>; <see cref="OwnerUserId"/> is set for the
/// private kinds (user, session) and is what their membership is checked against.
/// </summary>
internal sealed class MemoryItem : ITenantOwned
{
    /// <summary>The dimension of the <c>embedding</c> column; a model of another dimension needs a migration.</summary>
    public const int EmbeddingDimensions = 384;

    public Guid Id { get; init; }
    public required string TenantId { get; set; }
    public required string Namespace { get; init; }
    public string? OwnerUserId { get; init; }
    public required string AuthorId { get; init; }
    public required string AuthorName { get; init; }
    public required string Content { get; init; }
    public string? Metadata { get; init; }
    public required Vector Embedding { get; set; }
    public required string EmbeddingModel { get; set; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
}
