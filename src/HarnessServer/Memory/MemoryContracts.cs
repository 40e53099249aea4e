using System.Text.Json;
using System.Text.Json.Nodes;

namespace HarnessServer.Memory;

/// <summary>The result of <c>memory.save</c>: <c>{ id, namespace }</c>.</summary>
internal sealed record MemorySaveResult(Guid Id, string Namespace);

/// <summary>The result of <c>memory.search</c>: <c>{ items: [ { id, content, score, namespace } ] }</c>, best first.</summary>
internal sealed record MemorySearchResult(IReadOnlyList<MemorySearchItem> Items);

/// <summary>
/// One hit with its provenance: who wrote it, in which session and agent turn (when it was written in one), and when.
/// <see cref="Score"/> ranks within one search: the cosine similarity in <c>vector</c> mode, PostgreSQL's
/// <c>ts_rank</c> in <c>text</c> mode, the reciprocal-rank-fusion score in <c>hybrid</c> mode.
/// </summary>
internal sealed record MemorySearchItem(
    Guid Id, string Content, double Score, string Namespace, MemoryAuthor Author, Guid? SessionId, Guid? TurnId, DateTimeOffset CreatedAt);

/// <summary>One row a search plan found, before it is shown in its namespace.</summary>
internal sealed record MemoryHit(
    Guid Id, string Content, string AuthorId, string AuthorName, Guid? SessionId, Guid? TurnId, DateTimeOffset CreatedAt, double Score);

internal sealed record MemoryAuthor(string Id, string Name);

/// <summary>Where a write was made: the session and the agent turn, when there was one.</summary>
internal sealed record MemoryProvenance(Guid? SessionId, Guid? TurnId);

/// <summary>How a search ranks: by meaning, by words, or both fused (the default).</summary>
internal enum MemorySearchMode
{
    Hybrid,
    Vector,
    Text,
}

internal static class MemorySearchModes
{
    public const string Names = "vector, text or hybrid";

    /// <summary>The mode a request names (null: hybrid); anything else is a 400 problem with code <c>invalid_mode</c>.</summary>
    public static MemorySearchMode Parse(string? mode) => mode switch
    {
        null or "hybrid" => MemorySearchMode.Hybrid,
        "vector" => MemorySearchMode.Vector,
        "text" => MemorySearchMode.Text,
        _ => throw new Errors.HarnessError(Errors.ErrorKind.Invalid, "invalid_mode",
            $"mode '{mode}' is not a search mode; it must be {Names} (the default)."),
    };

    public static string Name(MemorySearchMode mode) => mode.ToString().ToLowerInvariant();
}

internal sealed record MemoryListItem(
    Guid Id, string Namespace, string Content, JsonObject? Metadata, MemoryAuthor Author,
    DateTimeOffset CreatedAt, DateTimeOffset? ExpiresAt, string EmbeddingModel);

/// <summary>One page of a namespace, oldest first; <see cref="Next"/> is the <c>after</c> of the next page.</summary>
internal sealed record MemoryPage(IReadOnlyList<MemoryListItem> Items, Guid? Next);

/// <summary>How far re-embedding with the configured model has come in a tenant.</summary>
internal sealed record MemoryReembeddingProgress(string Model, long Total, long Done);

internal sealed record SaveMemoryRequest(string? Content, JsonElement? Metadata, DateTimeOffset? ExpiresAt);

internal sealed record SearchMemoryRequest(string? Query, int? K, string? Mode);

/// <summary>A namespace the caller may use: its storage key, and the owner its rows are filtered on when private.</summary>
internal sealed record MemoryScope(MemoryNamespace Namespace, string StorageKey, string? OwnerUserId);
