using HarnessServer.Tenancy;
using Microsoft.Extensions.Caching.Memory;
using Npgsql;

namespace HarnessServer.Identity;

/// <summary>
/// Provisions tenants, users, teams and memberships just in time from token claims. One upsert per distinct
/// (user, name, teams) within the cache window, so steady traffic costs no writes.
/// </summary>
internal sealed class IdentityProvisioner(NpgsqlDataSource dataSource, IMemoryCache cache, TimeProvider time)
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(5);

    public async Task EnsureAsync(CurrentUser user, CancellationToken cancellationToken)
    {
        var key = (nameof(IdentityProvisioner), user.TenantId, user.UserId, user.DisplayName, string.Join('\n', user.Teams));
        if (cache.TryGetValue(key, out _))
        {
            return;
        }

        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                Command(Data.TenantConfiguration.InsertIfNewSql, user.TenantId, now),
                Command("""
                    INSERT INTO users (tenant_id, id, display_name, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)
                    ON CONFLICT (tenant_id, id) DO UPDATE SET display_name = excluded.display_name, last_seen_at = excluded.last_seen_at
                    """, user.TenantId, user.UserId, user.DisplayName, now),
                Command("""
                    INSERT INTO teams (tenant_id, name, created_at) SELECT $1, unnest($2::text[]), $3
                    ON CONFLICT (tenant_id, name) DO NOTHING
                    """, user.TenantId, user.Teams.ToArray(), now),
                Command("DELETE FROM team_memberships WHERE tenant_id = $1 AND user_id = $2 AND NOT (team_name = ANY($3))",
                    user.TenantId, user.UserId, user.Teams.ToArray()),
                Command("""
                    INSERT INTO team_memberships (tenant_id, team_name, user_id) SELECT $1, unnest($3::text[]), $2
                    ON CONFLICT DO NOTHING
                    """, user.TenantId, user.UserId, user.Teams.ToArray()),
            },
        };
        await batch.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        cache.Set(key, true, Window);
    }

    private static NpgsqlBatchCommand Command(string sql, params object[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        return command;
    }
}
