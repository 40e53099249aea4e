using System.Text.Json.Nodes;
using HarnessServer.Audit;
using Microsoft.Extensions.Options;
using Npgsql;
using static HarnessServer.Memory.MemoryTransaction;

namespace HarnessServer.Memory;

/// <summary>
/// Deletes memory items past their <c>expiresAt</c> (searches and listings already skip them), tenant by tenant,
/// every <see cref="MemoryOptions.PurgeInterval"/>. Each batch of deletions commits with one <c>memory.purged</c> audit
/// event naming the items and their namespaces, like every other delete of memory.
/// </summary>
internal sealed class MemoryPurger(
    NpgsqlDataSource database,
    AuditChain audit,
    IOptions<MemoryOptions> options,
    TimeProvider time,
    ILogger<MemoryPurger> logger) : BackgroundService
{
    private const int BatchSize = 500;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.PurgeInterval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await PurgeAllAsync(stoppingToken);
            }
            catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogWarning(exception, "Purging expired memory items failed; retrying in {Interval}", options.Value.PurgeInterval);
            }
        }
    }

    /// <summary>Purges every tenant's expired items; returns how many were deleted.</summary>
    public async Task<int> PurgeAllAsync(CancellationToken cancellationToken)
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

        var purged = 0;
        foreach (var tenant in tenants)
        {
            // Row-level security sees one tenant per transaction: ask cheaply first, so idle tenants write no event.
            while (await AnyExpiredAsync(tenant, cancellationToken) && await PurgeBatchAsync(tenant, cancellationToken) is var deleted and > 0)
            {
                purged += deleted;
                logger.LogInformation("Purged {Count} expired memory items of tenant {Tenant}", deleted, tenant);
            }
        }

        return purged;
    }

    private async Task<bool> AnyExpiredAsync(string tenant, CancellationToken cancellationToken)
    {
        await using var transaction = await MemoryTransaction.BeginAsync(database, tenant, cancellationToken);
        await using var exists = transaction.Batch(Command(
            "SELECT EXISTS (SELECT 1 FROM memory_items WHERE tenant_id = $1 AND expires_at <= $2)", Text(tenant), Value(time.GetUtcNow())));
        return (bool)(await exists.ExecuteScalarAsync(cancellationToken))!;
    }

    private async Task<int> PurgeBatchAsync(string tenant, CancellationToken cancellationToken)
    {
        var receipt = await audit.AppendAsync(tenant, async (unit, ct) =>
        {
            var transaction = await MemoryTransaction.BindAsync(unit, ct);
            var items = new JsonArray();
            await using (var delete = transaction.Batch(Command("""
                DELETE FROM memory_items WHERE id IN (
                    SELECT id FROM memory_items WHERE tenant_id = $1 AND expires_at <= $2 ORDER BY expires_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                RETURNING id, namespace, expires_at
                """, Text(tenant), Value(time.GetUtcNow()), Value(BatchSize))))
            await using (var reader = await delete.ExecuteReaderAsync(ct))
            {
                while (await reader.ReadAsync(ct))
                {
                    items.Add(new JsonObject
                    {
                        ["id"] = reader.GetGuid(0).ToString(),
                        ["namespace"] = reader.GetString(1),
                        ["expiresAt"] = AuditHash.FormatAt(reader.GetFieldValue<DateTimeOffset>(2)),
                    });
                }
            }

            // Another process purged them first: nothing to record, and no event is written for nothing.
            if (items.Count == 0)
            {
                return (0, (IReadOnlyList<AuditEntry>)[]);
            }

            return (items.Count, (IReadOnlyList<AuditEntry>)[new AuditEntry("memory.purged", new AuditActor("harness", "HarnessServer"),
                Tool: MemoryStore.SaveTool, Payload: new JsonObject { ["reason"] = "expired", ["count"] = items.Count, ["items"] = items })]);
        }, cancellationToken);
        return receipt.Result;
    }
}
