using Microsoft.Extensions.Options;
using Npgsql;
using Pgvector;
using static HarnessServer.Memory.MemoryTransaction;

namespace HarnessServer.Memory;

/// <summary>
/// After the embedding model changes, re-embeds every item whose <c>embedding_model</c> is not the configured one,
/// tenant by tenant in batches, and again on each interval. Until an item is re-embedded, search skips it: vectors of
/// two models are not comparable. Progress: <c>GET /v1/memory/reembedding</c>.
/// </summary>
internal sealed class MemoryReembedder(
    NpgsqlDataSource database,
    MemoryEmbedder embedder,
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

    private async Task ReembedAllAsync(CancellationToken cancellationToken)
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
    // so a row another process re-embedded meanwhile is simply skipped.
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
        await using (var transaction = await MemoryTransaction.BeginAsync(database, tenant, cancellationToken))
        {
            await using var update = transaction.Batch(batch.Select((item, i) => Command(
                "UPDATE memory_items SET embedding = $1, embedding_model = $2 WHERE tenant_id = $3 AND id = $4 AND embedding_model <> $2",
                Value(new Vector(vectors[i])), Text(embedder.ModelId), Text(tenant), Value(item.Id))).ToArray());
            await update.ExecuteNonQueryAsync(cancellationToken);
            await transaction.CommitAsync(cancellationToken);
        }

        return batch.Count;
    }
}
