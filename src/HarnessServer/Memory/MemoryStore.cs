using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Errors;
using HarnessServer.Identity;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Pgvector;
using static HarnessServer.Memory.MemoryTransaction;

namespace HarnessServer.Memory;

/// <summary>
/// Memory items of the caller's tenant: membership of the namespace first, then the write, search, listing or delete
/// in a transaction bound to the tenant by row-level security. The built-in tools <c>memory.save</c> and
/// <c>memory.search</c> call <see cref="SaveAsync(CurrentUser, string, string, JsonObject?, DateTimeOffset?, MemoryProvenance?, CancellationToken)"/>
/// and <see cref="SearchAsync(CurrentUser, string, string, int, MemorySearchMode, CancellationToken)"/>; policy is the caller's business.
/// </summary>
internal sealed class MemoryStore(
    NpgsqlDataSource database,
    MemoryEmbedder embedder,
    AuditChain audit,
    ISessionOwnership sessions,
    IOptions<MemoryOptions> options,
    TimeProvider time)
{
    private static readonly TimeSpan NamespaceSizeLifetime = TimeSpan.FromSeconds(30);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Tenant, string Namespace), (long Rows, long At)> _namespaceRows = new();

    public const string SaveTool = "memory.save";
    public const string SearchTool = "memory.search";
    public const int DefaultK = 5;
    public const int MaxK = 50;

    /// <summary>Parses <paramref name="namespace"/> and checks that the caller is a member of it.</summary>
    /// <exception cref="HarnessError">400 <c>invalid_namespace</c>, 403 <c>not_a_member</c> (a team the
    /// caller is not in), 404 <c>session_not_found</c> (a session the caller does not own).</exception>
    public async Task<MemoryScope> ResolveAsync(CurrentUser user, string? @namespace, CancellationToken cancellationToken)
    {
        var parsed = MemoryNamespace.Parse(@namespace);
        switch (parsed.Kind)
        {
            case MemoryNamespaceKind.Org:
                return new MemoryScope(parsed, "org", null);
            case MemoryNamespaceKind.Team when user.Teams.Contains(parsed.Name, StringComparer.Ordinal):
                return new MemoryScope(parsed, parsed.ToString(), null);
            case MemoryNamespaceKind.Team:
                throw new HarnessError(ErrorKind.Forbidden, "not_a_member",
                    $"You are not a member of team '{parsed.Name}'; only its members may read or write '{parsed}'.", "Not a member");
            case MemoryNamespaceKind.User:
                return new MemoryScope(parsed, $"user:{user.UserId}", user.UserId);
            default:
                if (!await sessions.IsOwnerAsync(user, parsed.Name!, cancellationToken))
                {
                    throw new HarnessError(ErrorKind.NotFound, "session_not_found",
                        $"No session '{parsed.Name}' of yours exists.", "Session not found");
                }

                return new MemoryScope(parsed, parsed.ToString(), user.UserId);
        }
    }

    public async Task<MemorySaveResult> SaveAsync(
        CurrentUser user, string @namespace, string content, JsonObject? metadata, DateTimeOffset? expiresAt, MemoryProvenance? provenance,
        CancellationToken cancellationToken) =>
        await SaveAsync(user, await ResolveAsync(user, @namespace, cancellationToken), content, metadata, expiresAt, provenance, cancellationToken);

    /// <summary>
    /// Refuses (400) a write that could never be stored, so that an approver is not asked about one: content and
    /// metadata within their limits, an expiry in the future.
    /// </summary>
    public void CheckSave(string? content, JsonObject? metadata, DateTimeOffset? expiresAt)
    {
        var limits = options.Value;
        var now = time.GetUtcNow();
        RequireText(content, "content", "invalid_content", "content_too_large", limits.MaxContentBytes);
        if (metadata?.ToJsonString() is { } metadataJson && Encoding.UTF8.GetByteCount(metadataJson) is var metadataBytes && metadataBytes > limits.MaxMetadataBytes)
        {
            throw Invalid("metadata_too_large",
                $"The metadata is {metadataBytes} bytes of JSON; the limit is {limits.MaxMetadataBytes} bytes (Harness:Memory:MaxMetadataBytes).");
        }

        if (expiresAt <= now)
        {
            throw Invalid("invalid_expiry", $"expiresAt {expiresAt:O} is not in the future (now is {now:O}).");
        }
    }

    /// <summary>Refuses (400) a search that could never run: a query within the limit, k between 1 and <see cref="MaxK"/>.</summary>
    public void CheckSearch(string? query, int k)
    {
        RequireText(query, "query", "invalid_query", "query_too_large", options.Value.MaxContentBytes);
        if (k is < 1 or > MaxK)
        {
            throw Invalid("invalid_k", $"k is {k}; it must be between 1 and {MaxK}.");
        }
    }

    /// <param name="provenance">The session and agent turn the write was made in, shown with the item in results.</param>
    public async Task<MemorySaveResult> SaveAsync(
        CurrentUser user, MemoryScope scope, string? content, JsonObject? metadata, DateTimeOffset? expiresAt, MemoryProvenance? provenance,
        CancellationToken cancellationToken)
    {
        CheckSave(content, metadata, expiresAt);
        var now = time.GetUtcNow();
        var metadataJson = metadata?.ToJsonString();

        // Embed before the transaction opens: a remote model's latency must not hold a connection and its locks.
        var embedding = await embedder.EmbedAsync(content!, cancellationToken);
        var id = Guid.CreateVersion7(now);
        // The item and its audit event commit together, or neither does (the chain answers 503 when it cannot).
        var saved = await audit.AppendAsync(user.TenantId, async (unit, ct) =>
        {
            await using var transaction = await MemoryTransaction.BindAsync(unit, ct);
            await using (var insert = transaction.Batch(Command("""
                INSERT INTO memory_items (id, tenant_id, namespace, owner_user_id, author_id, author_name, content, metadata,
                                          embedding, embedding_model, created_at, expires_at, session_id, turn_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                """,
                Value(id), Text(user.TenantId), Text(scope.StorageKey), Text(scope.OwnerUserId), Text(user.UserId),
                Text(user.DisplayName), Text(content), new NpgsqlParameter { Value = (object?)metadataJson ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Jsonb },
                Value(new Vector(embedding)), Text(embedder.ModelId), Value(now),
                new NpgsqlParameter { Value = (object?)expiresAt ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.TimestampTz },
                Uuid(provenance?.SessionId), Uuid(provenance?.TurnId))))
            {
                await insert.ExecuteNonQueryAsync(ct);
            }

            return (new MemorySaveResult(id, scope.Namespace.ToString()), (IReadOnlyList<AuditEntry>)[Event("memory.saved", user, scope, id, content!)]);
        }, cancellationToken);
        return saved.Result;
    }

    public async Task<MemorySearchResult> SearchAsync(
        CurrentUser user, string @namespace, string query, int k, MemorySearchMode mode, CancellationToken cancellationToken) =>
        await SearchAsync(user, await ResolveAsync(user, @namespace, cancellationToken), query, k, mode, cancellationToken);

    /// <summary>
    /// The k best items of the scope for the query. <see cref="MemorySearchMode.Vector"/>: nearest by cosine distance
    /// (a namespace under <see cref="MemoryOptions.ExactSearchMaxRows"/> rows ranked exactly from the btree filter, a
    /// larger one through HNSW with iterative scan, which keeps scanning past filtered-out rows instead of returning
    /// fewer than k; bench/results/memory.md measures both). <see cref="MemorySearchMode.Text"/>: PostgreSQL full text,
    /// any of the query's words. <see cref="MemorySearchMode.Hybrid"/>: both lists fused by reciprocal rank, so an
    /// identifier or error code the embedding blurs is found by its words, and a paraphrase by its meaning.
    /// </summary>
    public async Task<MemorySearchResult> SearchAsync(
        CurrentUser user, MemoryScope scope, string? query, int k, MemorySearchMode mode, CancellationToken cancellationToken)
    {
        CheckSearch(query, k);
        var vector = mode == MemorySearchMode.Text ? null : new Vector(await embedder.EmbedAsync(query!, cancellationToken));
        await using var transaction = await MemoryTransaction.BeginAsync(database, user.TenantId, cancellationToken);
        IReadOnlyList<MemoryHit> hits = mode switch
        {
            MemorySearchMode.Vector => await VectorHitsAsync(transaction, user.TenantId, scope, vector!, k, cancellationToken),
            MemorySearchMode.Text => await TextHitsAsync(transaction, user.TenantId, scope, query!, k, cancellationToken),
            _ => Fuse(
                await VectorHitsAsync(transaction, user.TenantId, scope, vector!, HybridCandidates(k), cancellationToken),
                await TextHitsAsync(transaction, user.TenantId, scope, query!, HybridCandidates(k), cancellationToken), k),
        };
        var display = scope.Namespace.ToString();
        return new MemorySearchResult(hits.Select(h => new MemorySearchItem(
            h.Id, h.Content, h.Score, display, new MemoryAuthor(h.AuthorId, h.AuthorName), h.SessionId, h.TurnId, h.CreatedAt)).ToList());
    }

    /// <summary>The constant of reciprocal rank fusion (Cormack et al. 2009): a hit's score is the sum of 1 / (60 + rank).</summary>
    public const int RrfConstant = 60;

    // Each list contributes more candidates than k, so an item ranked just below k by both lists can still win.
    private static int HybridCandidates(int k) => Math.Min(Math.Max(2 * k, 20), 2 * MaxK);

    internal static IReadOnlyList<MemoryHit> Fuse(IReadOnlyList<MemoryHit> vector, IReadOnlyList<MemoryHit> text, int k)
    {
        var fused = new Dictionary<Guid, (MemoryHit Hit, double Score)>();
        foreach (var list in (IReadOnlyList<MemoryHit>[])[vector, text])
        {
            for (var rank = 0; rank < list.Count; rank++)
            {
                var hit = list[rank];
                var contribution = 1.0 / (RrfConstant + rank + 1);
                fused[hit.Id] = fused.TryGetValue(hit.Id, out var seen) ? (seen.Hit, seen.Score + contribution) : (hit, contribution);
            }
        }

        // Ties (one list each, same rank) go to the text list's hit, which contains every word of the query, then to
        // the older item, so the order is stable.
        var matched = text.Select(t => t.Id).ToHashSet();
        return fused.Values
            .OrderByDescending(f => f.Score).ThenBy(f => matched.Contains(f.Hit.Id) ? 0 : 1).ThenBy(f => f.Hit.Id)
            .Take(k).Select(f => f.Hit with { Score = f.Score }).ToList();
    }

    // The namespace filter of every plan: the tenant, the namespace, the owner of a private one, unexpired.
    private const string NamespaceFilter = """
        tenant_id = $1 AND namespace = $2 AND ($3::text IS NULL OR owner_user_id = $3)
        AND (expires_at IS NULL OR expires_at > $4)
        """;

    // The vector plans' filter adds the model: vectors of two models are not comparable. $6 is the query vector, $7 is k.
    internal const string SearchFilter = $"""
        {NamespaceFilter} AND embedding_model = $5
        """;

    private const string HitColumns = "m.id, m.content, m.author_id, m.author_name, m.session_id, m.turn_id, m.created_at";

    // MATERIALIZED keeps the planner from ordering a small namespace through the HNSW index, where the filter would
    // leave fewer than k rows; only ids and distances are materialised, content is read for the k winners.
    internal const string ExactSearchSql = $"""
        WITH candidates AS MATERIALIZED (SELECT id, embedding <=> $6 AS distance FROM memory_items WHERE {SearchFilter}),
             top AS (SELECT id, distance FROM candidates ORDER BY distance LIMIT $7)
        SELECT {HitColumns}, top.distance FROM top JOIN memory_items m ON m.id = top.id ORDER BY top.distance
        """;

    // Run with hnsw.iterative_scan = relaxed_order, which may return neighbours slightly out of order; the outer
    // ORDER BY restores it.
    internal const string ApproximateSearchSql = $"""
        WITH top AS MATERIALIZED (
            SELECT id, embedding <=> $6 AS distance FROM memory_items WHERE {SearchFilter} ORDER BY embedding <=> $6 LIMIT $7)
        SELECT {HitColumns}, top.distance FROM top JOIN memory_items m ON m.id = top.id ORDER BY top.distance
        """;

    // Every word of the query (English stems, stop words ignored), as web search engines read it: "a or b" and quoted
    // phrases work, "-word" excludes. Matching any word instead let common words ("build", "access") put unrelated
    // items at the top of the text list, which fusion then rewarded (bench/results/memory.md). Items of an
    // older embedding model are found too: words do not depend on the model. $5 is the query text, $6 is k.
    internal const string TextSearchSql = $"""
        WITH q AS (SELECT websearch_to_tsquery('english', $5) AS query),
             top AS MATERIALIZED (
                 SELECT id, ts_rank(search_vector, q.query) AS rank FROM memory_items, q
                 WHERE {NamespaceFilter} AND search_vector @@ q.query
                 ORDER BY rank DESC, id LIMIT $6)
        SELECT {HitColumns}, top.rank FROM top JOIN memory_items m ON m.id = top.id ORDER BY top.rank DESC, top.id
        """;

    /// <summary>The k nearest items of the scope to <paramref name="vector"/>, nearest first, with their cosine distance.</summary>
    internal async Task<IReadOnlyList<(Guid Id, string Content, double Distance)>> SearchVectorAsync(
        string tenantId, MemoryScope scope, Vector vector, int k, CancellationToken cancellationToken)
    {
        await using var transaction = await MemoryTransaction.BeginAsync(database, tenantId, cancellationToken);
        return (await VectorHitsAsync(transaction, tenantId, scope, vector, k, cancellationToken)).Select(h => (h.Id, h.Content, 1 - h.Score)).ToList();
    }

    /// <summary>The k items of the scope whose words best match <paramref name="query"/>, best first.</summary>
    internal async Task<IReadOnlyList<MemoryHit>> SearchTextAsync(string tenantId, MemoryScope scope, string query, int k, CancellationToken cancellationToken)
    {
        await using var transaction = await MemoryTransaction.BeginAsync(database, tenantId, cancellationToken);
        return await TextHitsAsync(transaction, tenantId, scope, query, k, cancellationToken);
    }

    // Score: cosine similarity.
    private async Task<IReadOnlyList<MemoryHit>> VectorHitsAsync(
        MemoryTransaction transaction, string tenantId, MemoryScope scope, Vector vector, int k, CancellationToken cancellationToken)
    {
        var limits = options.Value;
        // Counting up to the threshold costs as much as a large namespace's search itself, so the size is cached
        // briefly: it only chooses the plan, and a stale choice costs time, never results.
        var key = (tenantId, scope.StorageKey);
        var now = time.GetTimestamp();
        if (!_namespaceRows.TryGetValue(key, out var cached) || time.GetElapsedTime(cached.At, now) > NamespaceSizeLifetime)
        {
            await using var count = transaction.Batch(Command(
                "SELECT count(*) FROM (SELECT 1 FROM memory_items WHERE tenant_id = $1 AND namespace = $2 LIMIT $3) AS capped",
                Text(tenantId), Text(scope.StorageKey), Value((long)limits.ExactSearchMaxRows)));
            cached = ((long)(await count.ExecuteScalarAsync(cancellationToken))!, now);
            _namespaceRows[key] = cached;
        }

        var parameters = new[]
        {
            Text(tenantId), Text(scope.StorageKey), Text(scope.OwnerUserId), Value(time.GetUtcNow()),
            Text(embedder.ModelId), Value(vector), Value(k),
        };
        await using var search = cached.Rows < limits.ExactSearchMaxRows
            ? transaction.Batch(Command(ExactSearchSql, parameters))
            : transaction.Batch(
                Command("SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)",
                    Text(limits.EfSearch.ToString(CultureInfo.InvariantCulture))),
                Command(ApproximateSearchSql, parameters));
        return await ReadHitsAsync(search, distance => 1 - distance, k, cancellationToken);
    }

    // Score: ts_rank of the item's lexemes against the query's.
    private async Task<IReadOnlyList<MemoryHit>> TextHitsAsync(
        MemoryTransaction transaction, string tenantId, MemoryScope scope, string query, int k, CancellationToken cancellationToken)
    {
        await using var search = transaction.Batch(Command(TextSearchSql,
            Text(tenantId), Text(scope.StorageKey), Text(scope.OwnerUserId), Value(time.GetUtcNow()), Text(query), Value(k)));
        return await ReadHitsAsync(search, rank => rank, k, cancellationToken);
    }

    private static async Task<IReadOnlyList<MemoryHit>> ReadHitsAsync(NpgsqlBatch search, Func<double, double> score, int k, CancellationToken cancellationToken)
    {
        await using var reader = await search.ExecuteReaderAsync(cancellationToken);
        if (search.BatchCommands.Count > 1)
        {
            await reader.NextResultAsync(cancellationToken);
        }

        var hits = new List<MemoryHit>(k);
        while (await reader.ReadAsync(cancellationToken))
        {
            hits.Add(new MemoryHit(
                reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetString(3),
                reader.IsDBNull(4) ? null : reader.GetGuid(4), reader.IsDBNull(5) ? null : reader.GetGuid(5),
                reader.GetFieldValue<DateTimeOffset>(6), score(Convert.ToDouble(reader.GetValue(7), CultureInfo.InvariantCulture))));
        }

        return hits;
    }

    /// <summary>A page of the namespace's unexpired items, oldest first (ids are time-ordered UUIDv7).</summary>
    public async Task<MemoryPage> ListAsync(CurrentUser user, MemoryScope scope, Guid? after, int limit, CancellationToken cancellationToken)
    {
        await using var transaction = await MemoryTransaction.BeginAsync(database, user.TenantId, cancellationToken);
        await using var list = transaction.Batch(Command("""
            SELECT id, content, metadata::text, author_id, author_name, created_at, expires_at, embedding_model FROM memory_items
            WHERE tenant_id = $1 AND namespace = $2 AND ($3::text IS NULL OR owner_user_id = $3)
              AND (expires_at IS NULL OR expires_at > $4) AND ($5::uuid IS NULL OR id > $5)
            ORDER BY id LIMIT $6
            """,
            Text(user.TenantId), Text(scope.StorageKey), Text(scope.OwnerUserId), Value(time.GetUtcNow()),
            new NpgsqlParameter { Value = (object?)after ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Uuid }, Value(limit)));
        await using var reader = await list.ExecuteReaderAsync(cancellationToken);
        var items = new List<MemoryListItem>(limit);
        var display = scope.Namespace.ToString();
        while (await reader.ReadAsync(cancellationToken))
        {
            items.Add(new MemoryListItem(
                reader.GetGuid(0), display, reader.GetString(1),
                reader.IsDBNull(2) ? null : JsonNode.Parse(reader.GetString(2))!.AsObject(),
                new MemoryAuthor(reader.GetString(3), reader.GetString(4)),
                reader.GetFieldValue<DateTimeOffset>(5),
                reader.IsDBNull(6) ? null : reader.GetFieldValue<DateTimeOffset>(6),
                reader.GetString(7)));
        }

        return new MemoryPage(items, items.Count == limit ? items[^1].Id : null);
    }

    /// <summary>Deletes one item of the namespace. Shared items (org, team) may be deleted by their author or an admin.</summary>
    public async Task DeleteAsync(CurrentUser user, MemoryScope scope, Guid id, CancellationToken cancellationToken)
    {
        await audit.AppendAsync(user.TenantId, async (unit, cancellationToken) =>
        {
            await using var transaction = await MemoryTransaction.BindAsync(unit, cancellationToken);
            string authorId, content;
            await using (var find = transaction.Batch(Command("""
                SELECT author_id, content FROM memory_items
                WHERE tenant_id = $1 AND namespace = $2 AND ($3::text IS NULL OR owner_user_id = $3) AND id = $4
                FOR UPDATE
                """, Text(user.TenantId), Text(scope.StorageKey), Text(scope.OwnerUserId), Value(id))))
            await using (var reader = await find.ExecuteReaderAsync(cancellationToken))
            {
                if (!await reader.ReadAsync(cancellationToken))
                {
                    throw new HarnessError(ErrorKind.NotFound, "memory_item_not_found",
                        $"No memory item {id} exists in '{scope.Namespace}'.", "Memory item not found");
                }

                (authorId, content) = (reader.GetString(0), reader.GetString(1));
            }

            if (authorId != user.UserId && !user.IsAdmin)
            {
                throw new HarnessError(ErrorKind.Forbidden, "not_author",
                    $"Memory item {id} in '{scope.Namespace}' was written by another user; only its author or an admin may delete it.", "Not the author");
            }

            await using (var delete = transaction.Batch(Command("DELETE FROM memory_items WHERE tenant_id = $1 AND id = $2", Text(user.TenantId), Value(id))))
            {
                await delete.ExecuteNonQueryAsync(cancellationToken);
            }

            return (true, (IReadOnlyList<AuditEntry>)[Event("memory.deleted", user, scope, id, content)]);
        }, cancellationToken);
    }

    // The trail names the item and the hash of its content, never the content itself.
    private static AuditEntry Event(string type, CurrentUser user, MemoryScope scope, Guid id, string content) =>
        new(type, new AuditActor(user.UserId, user.DisplayName),
            scope.Namespace.Kind == MemoryNamespaceKind.Session && Guid.TryParse(scope.Namespace.Name, out var session) ? session : null,
            SaveTool,
            Payload: new JsonObject
            {
                ["itemId"] = id.ToString(),
                ["namespace"] = scope.Namespace.ToString(),
                ["contentSha256"] = Sha256(content),
            });

    public async Task<MemoryReembeddingProgress> ReembeddingProgressAsync(string tenantId, CancellationToken cancellationToken)
    {
        await using var transaction = await MemoryTransaction.BeginAsync(database, tenantId, cancellationToken);
        await using var progress = transaction.Batch(Command(
            "SELECT count(*), count(*) FILTER (WHERE embedding_model = $2) FROM memory_items WHERE tenant_id = $1",
            Text(tenantId), Text(embedder.ModelId)));
        await using var reader = await progress.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new MemoryReembeddingProgress(embedder.ModelId, reader.GetInt64(0), reader.GetInt64(1));
    }

    private static void RequireText(string? text, string name, string invalidCode, string tooLargeCode, int maxBytes)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            throw Invalid(invalidCode, $"{name} is required and must contain more than white space.");
        }

        var bytes = Encoding.UTF8.GetByteCount(text);
        if (bytes > maxBytes)
        {
            throw Invalid(tooLargeCode, $"The {name} is {bytes} bytes of UTF-8; the limit is {maxBytes} bytes (Harness:Memory:MaxContentBytes).");
        }
    }

    private static NpgsqlParameter Uuid(Guid? value) => new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Uuid };

    private static HarnessError Invalid(string code, string detail) =>
        new(ErrorKind.Invalid, code, detail);

    private static string Sha256(string content) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(content)));
}
