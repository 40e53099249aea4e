using System.Collections.Frozen;
using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Tools;

/// <summary>
/// A tenant's tools: the built-ins, overridden or extended by the newest registration of each name. Cached per
/// tenant and dropped when <see cref="ChangeFeed"/> reports a change from any server process.
/// </summary>
internal sealed class ToolRegistry
{
    public const string ChangeKind = "tools";

    private readonly TenantDbContextFactory _contexts;
    private readonly TenantCache<FrozenDictionary<string, ToolDefinition>> _tenants;

    public ToolRegistry(TenantDbContextFactory contexts, ChangeFeed feed)
    {
        _contexts = contexts;
        _tenants = new TenantCache<FrozenDictionary<string, ToolDefinition>>(feed, ChangeKind, LoadAsync);
    }

    public async Task<ToolDefinition?> FindAsync(string tenantId, string name, CancellationToken cancellationToken) =>
        (await ToolsOfAsync(tenantId, cancellationToken)).GetValueOrDefault(name);

    public async Task<IReadOnlyCollection<ToolDefinition>> ListAsync(string tenantId, CancellationToken cancellationToken) =>
        (await ToolsOfAsync(tenantId, cancellationToken)).Values;

    private Task<FrozenDictionary<string, ToolDefinition>> ToolsOfAsync(string tenantId, CancellationToken cancellationToken) =>
        _tenants.GetAsync(tenantId, cancellationToken);

    private async Task<FrozenDictionary<string, ToolDefinition>> LoadAsync(string tenantId)
    {
        await using var db = _contexts.Create(tenantId);
        var registrations = await db.ToolRegistrations.AsNoTracking().ToListAsync();
        var tools = BuiltInTools.All.ToDictionary(StringComparer.Ordinal);
        foreach (var newest in registrations.GroupBy(r => r.Name).Select(g => g.MaxBy(r => r.Version)!))
        {
            if (newest.Deleted)
            {
                tools.Remove(newest.Name);
                continue;
            }

            // A built-in's schema is the server's (it cannot be redefined): a registration that only re-described or
            // disabled it must not pin the schema of the version that stored it.
            var schema = newest.Kind == ToolKind.Builtin && BuiltInTools.All.TryGetValue(newest.Name, out var builtin)
                ? builtin.Schema
                : newest.Schema.RootElement.Clone();
            tools[newest.Name] = new ToolDefinition(newest.Name, newest.Description, schema, newest.Kind, newest.Argv, newest.Enabled, newest.Version);
        }

        return tools.ToFrozenDictionary(StringComparer.Ordinal);
    }
}
