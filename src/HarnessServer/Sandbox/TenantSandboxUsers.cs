using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Sandbox;

/// <summary>
/// Each tenant's sandbox user: uid and gid <c>TenantUidBase + sandbox_index</c>, where the index is given once, from
/// the <c>tenant_sandbox_index</c> sequence, when the tenant's row is created. An index never changes, so a lookup is
/// cached for the life of the process.
/// </summary>
internal sealed class TenantSandboxUsers(NpgsqlDataSource dataSource, IOptions<SandboxOptions> options)
{
    private readonly ConcurrentDictionary<string, SandboxUser> _users = new(StringComparer.Ordinal);

    public async ValueTask<SandboxUser> OfAsync(string tenant, CancellationToken cancellationToken)
    {
        if (_users.TryGetValue(tenant, out var known))
        {
            return known;
        }

        await using var command = dataSource.CreateCommand("SELECT sandbox_index FROM tenants WHERE id = $1");
        command.Parameters.Add(new NpgsqlParameter { Value = tenant });
        var index = await command.ExecuteScalarAsync(cancellationToken) as long?
            ?? throw new InvalidOperationException($"Tenant '{tenant}' has no row, so no sandbox user.");
        var user = UserAt(options.Value.TenantUidBase, index);
        return _users.GetOrAdd(tenant, user);
    }

    /// <summary>The user of the tenant with sandbox index <paramref name="index"/>; refuses ids past the range.</summary>
    internal static SandboxUser UserAt(int tenantUidBase, long index)
    {
        var uid = tenantUidBase + index;
        if (index < 0 || uid > SandboxOptions.MaxTenantUid)
        {
            throw new SandboxException(SandboxErrors.SandboxUnavailable,
                $"Sandbox index {index} gives user id {uid}, past the last one ({SandboxOptions.MaxTenantUid}); no host user is left for this tenant.");
        }

        return new SandboxUser((int)uid, (int)uid);
    }
}
