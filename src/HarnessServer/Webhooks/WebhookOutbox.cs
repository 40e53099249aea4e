using System.Text.Json.Nodes;
using HarnessServer.Audit;
using Npgsql;
using NpgsqlTypes;

namespace HarnessServer.Webhooks;

/// <summary>
/// Puts an event in the tenant's webhook outbox in the transaction of what it reports, so an event is delivered
/// exactly when what it reports committed, and a restart loses none. Nothing is written for a tenant without a
/// webhook. Of the two bodies the row keeps the one the tenant's setting allows: with the call's arguments only when
/// it opted in.
/// </summary>
internal static class WebhookOutbox
{
    /// <summary>An approval waits for a decision.</summary>
    public const string Pending = "approval.pending";

    /// <summary>An approval was decided: approved, rejected or expired.</summary>
    public const string Decided = "approval.decided";

    /// <summary>The ChangeFeed kind that wakes the dispatchers of every process.</summary>
    public const string ChangeKind = "webhooks";

    /// <summary>The outbox row as a command that commits with an audit append.</summary>
    /// <param name="tenant">the tenant whose webhook gets it</param>
    /// <param name="type">the event (<see cref="Pending"/>, <see cref="Decided"/>)</param>
    /// <param name="approval">the approval as the event describes it, without arguments</param>
    /// <param name="arguments">the held call's arguments and preview, sent only to tenants that opted in</param>
    /// <param name="at">when the event happened</param>
    public static AuditCommand Enqueue(string tenant, string type, JsonObject approval, JsonObject? arguments, DateTimeOffset at)
    {
        var id = Guid.NewGuid();
        var plain = Body(id, tenant, type, approval, null, at);
        var full = Body(id, tenant, type, approval, arguments, at);
        return new AuditCommand("""
            INSERT INTO webhook_deliveries (id, tenant_id, event, body, status, attempts, next_attempt_at, created_at)
            SELECT $1, w.tenant_id, $2, CASE WHEN w.include_arguments THEN $4 ELSE $3 END, 'Pending', 0, $5, $5
            FROM tenant_webhooks w WHERE w.tenant_id = $6
            """,
            id, type, new NpgsqlParameter { Value = plain, NpgsqlDbType = NpgsqlDbType.Text },
            new NpgsqlParameter { Value = full, NpgsqlDbType = NpgsqlDbType.Text }, at, tenant);
    }

    /// <summary>Runs <see cref="Enqueue"/> in a unit of work whose changes are EF's (the approval decisions).</summary>
    public static async Task EnqueueAsync(AuditUnitOfWork unit, string type, JsonObject approval, JsonObject? arguments, DateTimeOffset at, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(unit.Connection, unit.Transaction);
        batch.BatchCommands.Add(Enqueue(unit.TenantId, type, approval, arguments, at).ToBatchCommand());
        await batch.ExecuteNonQueryAsync(ct);
        unit.NotifyChange(ChangeKind, unit.TenantId);
    }

    /// <summary>
    /// The most an opted-in body carries of a call's arguments and preview (as JSON, UTF-8): a call's arguments may be
    /// as large as a request body, and every retry of every delivery would send them again. Larger ones are left out
    /// and the body says so; the approver's queue (<c>GET /v1/approvals</c>) still has them.
    /// </summary>
    internal const int MaxArgumentsBytes = 64 * 1024;

    private static string Body(Guid id, string tenant, string type, JsonObject approval, JsonObject? arguments, DateTimeOffset at)
    {
        if (arguments is not null && System.Text.Encoding.UTF8.GetByteCount(arguments.ToJsonString()) > MaxArgumentsBytes)
        {
            arguments = new JsonObject
            {
                ["argumentsOmitted"] = $"The call's arguments and preview are larger than {MaxArgumentsBytes:N0} bytes; the approver's queue (GET /v1/approvals) shows them.",
            };
        }

        var body = new JsonObject
        {
            ["id"] = id.ToString(),
            ["type"] = type,
            ["tenant"] = tenant,
            ["at"] = at.ToUniversalTime().ToString("O", System.Globalization.CultureInfo.InvariantCulture),
            ["approval"] = approval.DeepClone(),
        };
        if (arguments is not null)
        {
            foreach (var (key, value) in arguments)
            {
                body[key] = value?.DeepClone();
            }
        }

        return body.ToJsonString();
    }
}
