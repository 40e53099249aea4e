using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Tenancy;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace HarnessServer.Agents;

/// <summary>
/// A tenant's settings for agent turns, edited by its admins (<c>/v1/admin/agent-settings</c>). A tenant without a
/// stored row gets the configured defaults (<c>Harness:Agent:MemoryRetrieval</c>, off).
/// </summary>
internal sealed class AgentSettings : ITenantOwned
{
    public required string TenantId { get; set; }

    /// <summary>Whether each turn starts by retrieving relevant items from the user's and their teams' memory.</summary>
    public bool MemoryRetrieval { get; set; }

    /// <summary>How many items at most are retrieved into the context of a turn.</summary>
    public int MemoryItems { get; set; }

    public required string UpdatedBy { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>The body and answer of <c>/v1/admin/agent-settings</c>.</summary>
internal sealed record AgentSettingsView(bool MemoryRetrieval, int MemoryItems, string? UpdatedBy, DateTimeOffset? UpdatedAt);

internal sealed record AgentSettingsBody(bool? MemoryRetrieval, int? MemoryItems);

internal sealed class AgentSettingsService(HarnessDbContext db, TenantContext tenant, AuditChain audit, IOptions<AgentOptions> options, TimeProvider time)
{
    public const int MaxMemoryItems = 20;

    public async Task<AgentSettingsView> GetAsync(string tenantId, CancellationToken cancellationToken)
    {
        tenant.Set(tenantId);
        var stored = await db.AgentSettings.AsNoTracking().FirstOrDefaultAsync(cancellationToken);
        return stored is null
            ? new AgentSettingsView(options.Value.MemoryRetrieval, options.Value.MemoryItems, null, null)
            : new AgentSettingsView(stored.MemoryRetrieval, stored.MemoryItems, stored.UpdatedBy, stored.UpdatedAt);
    }

    /// <summary>Replaces the given fields (absent ones keep their value) and audits the change with both values.</summary>
    public async Task<AgentSettingsView> UpdateAsync(CurrentUser admin, AgentSettingsBody body, CancellationToken cancellationToken)
    {
        if (body.MemoryItems is < 1 or > MaxMemoryItems)
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_settings",
                $"memoryItems is {body.MemoryItems}; it must be between 1 and {MaxMemoryItems}.");
        }

        var receipt = await audit.AppendAsync(admin.TenantId, async (unit, ct) =>
        {
            // The row exists (with the defaults, if this is the tenant's first change) and is locked before it is read,
            // so the audited "before" is exactly what this change replaced, even when admins save at once.
            var now = time.GetUtcNow();
            await unit.Db.Database.ExecuteSqlInterpolatedAsync($"""
                INSERT INTO agent_settings (tenant_id, memory_retrieval, memory_items, updated_by, updated_at)
                VALUES ({admin.TenantId}, {options.Value.MemoryRetrieval}, {options.Value.MemoryItems}, {admin.UserId}, {now})
                ON CONFLICT (tenant_id) DO NOTHING
                """, ct);
            var before = (await unit.Db.AgentSettings.FromSqlInterpolated($"SELECT * FROM agent_settings WHERE tenant_id = {admin.TenantId} FOR UPDATE")
                .IgnoreQueryFilters().AsNoTracking().ToListAsync(ct)).Single();
            var after = new AgentSettingsView(body.MemoryRetrieval ?? before.MemoryRetrieval, body.MemoryItems ?? before.MemoryItems, admin.UserId, now);
            await unit.Db.Database.ExecuteSqlInterpolatedAsync($"""
                UPDATE agent_settings SET memory_retrieval = {after.MemoryRetrieval}, memory_items = {after.MemoryItems},
                    updated_by = {admin.UserId}, updated_at = {now}
                WHERE tenant_id = {admin.TenantId}
                """, ct);
            return (after, (IReadOnlyList<AuditEntry>)[new AuditEntry("agent.settings_changed", new AuditActor(admin.UserId, admin.DisplayName), Payload: new JsonObject
            {
                ["before"] = new JsonObject { ["memoryRetrieval"] = before.MemoryRetrieval, ["memoryItems"] = before.MemoryItems },
                ["after"] = new JsonObject { ["memoryRetrieval"] = after.MemoryRetrieval, ["memoryItems"] = after.MemoryItems },
            })]);
        }, cancellationToken);
        return receipt.Result;
    }
}
