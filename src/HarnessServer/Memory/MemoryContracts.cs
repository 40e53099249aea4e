using System.Text.Json;
using System.Text.Json.Nodes;

namespace HarnessServer.Memory;

/// <summary>The result of <c>memory.save</c>: <c>{ id, namespace }</c>.</summary>
internal sealed record MemorySaveResult(Guid Id, string Namespace);

/// <summary>The result of <c>memory.search</c>: <c>{ items: [ { id, content, score, namespace } ] }</c>, best first.</summary>
internal sealed record MemorySearchResult(IReadOnlyList<MemorySearchItem> Items);

/// <summary>One hit; <see cref="Score"/> is the cosine similarity (1 - cosine distance) to the query.</summary>
internal sealed record MemorySearchItem(Guid Id, string Content, double Score, string Namespace);

internal sealed record MemoryAuthor(string Id, string Name);

internal sealed record MemoryListItem(
    Guid Id, string Namespace, string Content, JsonObject? Metadata, MemoryAuthor Author,
    DateTimeOffset CreatedAt, DateTimeOffset? ExpiresAt, string EmbeddingModel);

/// <summary>One page of a namespace, oldest first; <see cref="Next"/> is the <c>after</c> of the next page.</summary>
internal sealed record MemoryPage(IReadOnlyList<MemoryListItem> Items, Guid? Next);

/// <summary>How far re-embedding with the configured model has come in a tenant.</summary>
internal sealed record MemoryReembeddingProgress(string Model, long Total, long Done);

internal sealed record SaveMemoryRequest(string? Content, JsonElement? Metadata, DateTimeOffset? ExpiresAt);

internal sealed record SearchMemoryRequest(string? Query, int? K);

/// <summary>A namespace the caller may use: its storage key, and the owner its rows are filtered on when private.</summary>
internal sealed record MemoryScope(MemoryNamespace Namespace, string StorageKey, string? OwnerUserId);
