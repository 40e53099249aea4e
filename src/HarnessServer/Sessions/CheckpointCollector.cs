using System.Text.Json.Nodes;
using HarnessServer.Audit;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Sessions;

/// <summary>
/// Collects the blobs of checkpoints no session can roll back to any more, tenant by tenant, every
/// <see cref="CheckpointOptions.CollectInterval"/>: with <see cref="CheckpointOptions.KeepPerSession"/> set it first
/// deletes each session's older checkpoint rows (one <c>workspace.checkpoints_pruned</c> audit event per tenant that
/// lost any), then removes every blob that no remaining row's tree, and no capture of the last hour whose row may
/// still be committing, reaches (<see cref="WorkspaceCheckpoints.CollectAsync"/>).
/// </summary>
internal sealed class CheckpointCollector(
    WorkspaceCheckpoints checkpoints,
    NpgsqlDataSource database,
    AuditChain audit,
    IOptions<CheckpointOptions> options,
    TimeProvider time,
    ILogger<CheckpointCollector> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.CollectInterval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            foreach (var tenant in checkpoints.Tenants())
            {
                try
                {
                    await CollectAsync(tenant, time.GetUtcNow(), stoppingToken);
                }
                catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
                {
                    logger.LogWarning(exception, "Collecting the checkpoint store of tenant {Tenant} failed; retrying in {Interval}", tenant, options.Value.CollectInterval);
                }
            }
        }
    }

    /// <summary>Prunes (when configured) and collects one tenant's store; <paramref name="now"/> ages the pending captures.</summary>
    public async Task<CollectedBlobs> CollectAsync(string tenant, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (options.Value.KeepPerSession > 0)
        {
            await PruneAsync(tenant, options.Value.KeepPerSession, cancellationToken);
        }

        var collected = await checkpoints.CollectAsync(tenant, now, ct => CommittedRootsAsync(tenant, ct), cancellationToken);
        if (collected.Deleted > 0)
        {
            logger.LogInformation("Collected {Count} checkpoint blobs ({Bytes} bytes) of tenant {Tenant}", collected.Deleted, collected.Bytes, tenant);
        }

        return collected;
    }

    private async Task<IReadOnlyCollection<string>> CommittedRootsAsync(string tenant, CancellationToken cancellationToken)
    {
        var roots = new HashSet<string>(StringComparer.Ordinal);
        await using var command = database.CreateCommand("SELECT DISTINCT tree_hash FROM workspace_checkpoints WHERE tenant_id = $1");
        command.Parameters.Add(new NpgsqlParameter { Value = tenant });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            roots.Add(reader.GetString(0).Trim());
        }

        return roots;
    }

    private async Task PruneAsync(string tenant, int keep, CancellationToken cancellationToken)
    {
        await audit.AppendAsync(tenant, async (unit, ct) =>
        {
            var sessions = new HashSet<Guid>();
            var pruned = 0;
            await using (var delete = new NpgsqlCommand("""
                DELETE FROM workspace_checkpoints WHERE id IN (
                    SELECT id FROM (
                        SELECT id, row_number() OVER (PARTITION BY session_id ORDER BY created_at DESC, id DESC) AS newer
                        FROM workspace_checkpoints WHERE tenant_id = $1) ranked
                    WHERE newer > $2)
                RETURNING session_id
                """, unit.Connection, unit.Transaction))
            {
                delete.Parameters.Add(new NpgsqlParameter { Value = tenant });
                delete.Parameters.Add(new NpgsqlParameter { Value = keep });
                await using var reader = await delete.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    sessions.Add(reader.GetGuid(0));
                    pruned++;
                }
            }

            // Nothing was old enough: no event is written for nothing.
            if (pruned == 0)
            {
                return (0, (IReadOnlyList<AuditEntry>)[]);
            }

            return (pruned, (IReadOnlyList<AuditEntry>)[new AuditEntry("workspace.checkpoints_pruned", new AuditActor("harness", "HarnessServer"),
                Payload: new JsonObject
                {
                    ["keepPerSession"] = keep,
                    ["count"] = pruned,
                    ["sessions"] = new JsonArray(sessions.Order().Select(s => (JsonNode)s.ToString()).ToArray()),
                })]);
        }, cancellationToken);
    }
}
