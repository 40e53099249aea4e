using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Audit;

/// <summary>
/// What a reviewer narrows the chain to. <see cref="User"/>, <see cref="Tool"/> and <see cref="Type"/> match exactly
/// (each has its own <c>(tenant, column, seq)</c> index); <see cref="Outcome"/> matches <c>decision.effect</c> or
/// <c>payload.status</c>; <see cref="From"/> and <see cref="To"/> bound <c>at</c>, inclusive. A null field filters nothing.
/// </summary>
internal sealed record AuditEventFilter(
    string? User = null, string? Tool = null, string? Type = null, string? Outcome = null, DateTimeOffset? From = null, DateTimeOffset? To = null)
{
    public static AuditEventFilter None { get; } = new();

    public bool IsEmpty => this == None;
}

/// <summary>
/// The keyset-paged read of a tenant's events that <c>GET /v1/audit/events</c> and the console's audit page share:
/// <c>seq &gt; after</c>, the filter, <c>ORDER BY seq LIMIT n + 1</c>, so a page costs the same at any depth (no OFFSET).
/// </summary>
internal static class AuditQuery
{
    /// <summary>Up to <paramref name="take"/> events after <paramref name="after"/>; <c>Next</c> is the following page's <c>after</c>.</summary>
    public static async Task<(List<AuditEventRecord> Events, long? Next)> PageAsync(
        HarnessDbContext db, AuditEventFilter filter, long after, int take, CancellationToken ct)
    {
        var rows = await Filtered(db, filter).Where(e => e.Seq > after).OrderBy(e => e.Seq).Take(take + 1).ToListAsync(ct);
        var page = rows.Count > take ? rows.GetRange(0, take) : rows;
        return (page, rows.Count > take ? page[^1].Seq : null);
    }

    /// <summary>The tenant's events narrowed by <paramref name="filter"/> (the tenant query filter scopes FromSql too).</summary>
    public static IQueryable<AuditEventRecord> Filtered(HarnessDbContext db, AuditEventFilter filter)
    {
        var outcome = filter.Outcome;
        var events = outcome is null
            ? db.Set<AuditEventRecord>()
            // The tenant again inside the raw SQL: the query filter applies outside it, and a statement sharded by
            // tenant (docs/sharding.md) names the tenant at each table it reads.
            : db.Set<AuditEventRecord>().FromSql(
                $"SELECT * FROM audit_events WHERE tenant_id = {db.CurrentTenantId} AND (decision ->> 'effect' = {outcome} OR payload ->> 'status' = {outcome})");
        var query = events.AsNoTracking();
        if (filter.User is { } user)
        {
            query = query.Where(e => e.ActorId == user);
        }

        if (filter.Tool is { } tool)
        {
            query = query.Where(e => e.Tool == tool);
        }

        if (filter.Type is { } type)
        {
            query = query.Where(e => e.Type == type);
        }

        if (filter.From is { } from)
        {
            var f = from.ToUniversalTime();
            query = query.Where(e => e.At >= f);
        }

        if (filter.To is { } to)
        {
            var t = to.ToUniversalTime();
            query = query.Where(e => e.At <= t);
        }

        return query;
    }
}
