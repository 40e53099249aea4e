using System.Text.Json.Nodes;
using HarnessServer.Audit;
using Microsoft.Extensions.Options;
using Npgsql;
using Pgvector;
using static HarnessServer.Memory.MemoryTransaction;

namespace HarnessServer.Memory;

/// <summary>
/// After the embedding model changes, re-embeds every item whose <c>embedding_model</c> is not the configured one,
/// tenant by tenant in batches, and again on each interval. Until an item is re-embedded, vector search skips it
/// (vectors of two models are not comparable) and text search still finds it. Each batch commits with one
/// <c>memory.reembedded</c> audit event naming the items and both models. Progress: <c>GET /v1/memory/reembedding</c>.
/// </summary>
internal sealed class MemoryReembedder(
    NpgsqlDataSource database,
    MemoryEmbedder embedder,
    AuditChain audit,
    IOptions<MemoryOptions> options,
    TimeProvider time,
    ILogger<MemoryReembedder> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.ReembedInterval, time);
        do
        {
            try
            {
                await ReembedAllAsync(stoppingToken);
            }
            catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogWarning(exception, "Re-embedding memory with {Model} failed; retrying in {Interval}", embedder.ModelId, options.Value.ReembedInterval);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>One pass over every tenant: what the timer runs (tests run it directly).</summary>
    internal async Task ReembedAllAsync(CancellationToken cancellationToken)
    {
        var tenants = new List<string>();
        await using (var command = database.CreateCommand("SELECT id FROM tenants ORDER BY id"))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                tenants.Add(reader.GetString(0));
            }
        }

        foreach (var tenant in tenants)
        {
            var total = 0;
            while (await ReembedBatchAsync(tenant, cancellationToken) is var done and > 0)
            {
                total += done;
            }

            if (total > 0)
            {
                logger.LogInformation("Re-embedded {Count} memory items of tenant {Tenant} with {Model}", total, tenant, embedder.ModelId);
            }
        }
    }

    // Read, embed outside any transaction, then write back only rows still on an old model: items are never edited,
    // so a row another process re-embedded meanwhile is simply skipped, and named in no event.
    private async Task<int> ReembedBatchAsync(string tenant, CancellationToken cancellationToken)
    {
        var batch = new List<(Guid Id, string Content)>();
        await using (var transaction = await MemoryTransaction.BeginAsync(database, tenant, cancellationToken))
        await using (var select = transaction.Batch(Command(
            "SELECT id, content FROM memory_items WHERE tenant_id = $1 AND embedding_model <> $2 ORDER BY id LIMIT $3",
            Text(tenant), Text(embedder.ModelId), Value(options.Value.ReembedBatchSize))))
        await using (var reader = await select.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                batch.Add((reader.GetGuid(0), reader.GetString(1)));
            }
        }

        if (batch.Count == 0)
        {
            return 0;
        }

        var vectors = await embedder.EmbedAsync(batch.Select(b => b.Content).ToList(), cancellationToken);
        var receipt = await audit.AppendAsync(tenant, async (unit, ct) =>
        {
            var transaction = await MemoryTransaction.BindAsync(unit, ct);
            var items = new JsonArray();
            await using (var update = transaction.Batch(batch.Select((item, i) => Command(
                // The self-join's row is the one before the update: the event names the model the item had.
                "UPDATE memory_items m SET embedding = $1, embedding_model = $2 FROM memory_items old " +
                "WHERE old.id = m.id AND m.tenant_id = $3 AND m.id = $4 AND m.embedding_model <> $2 " +
                "RETURNING m.id, m.namespace, old.embedding_model",
                Value(new Vector(vectors[i])), Text(embedder.ModelId), Text(tenant), Value(item.Id))).ToArray()))
            await using (var reader = await update.ExecuteReaderAsync(ct))
            {
                do
                {
                    while (await reader.ReadAsync(ct))
                    {
                        items.Add(new JsonObject
                        {
                            ["id"] = reader.GetGuid(0).ToString(), ["namespace"] = reader.GetString(1), ["fromModel"] = reader.GetString(2),
                        });
                    }
                }
                while (await reader.NextResultAsync(ct));
            }

            if (items.Count == 0)
            {
                return (0, (IReadOnlyList<AuditEntry>)[]);
            }

            return (items.Count, (IReadOnlyList<AuditEntry>)[new AuditEntry("memory.reembedded", new AuditActor("harness", "HarnessServer"),
                Tool: MemoryStore.SaveTool, Payload: new JsonObject { ["model"] = embedder.ModelId, ["count"] = items.Count, ["items"] = items })]);
        }, cancellationToken);
        // Rows another process re-embedded first count as handled: the next batch starts after them.
        return receipt.Result == 0 ? batch.Count : receipt.Result;
    }
}
