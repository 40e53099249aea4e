using System.Buffers;
using Npgsql;

namespace HarnessServer.Audit;

/// <summary>
/// Signs <c>{at, hash, seq, tenant}</c> (canonical JSON, the same JCS as the chain) for a tenant's current head and
/// stores it in the insert-only <c>audit_checkpoints</c>. A later chain that is shorter than, or differs from, a
/// signed checkpoint is caught by <see cref="AuditVerifier"/>.
/// </summary>
internal sealed class AuditCheckpoints(
    NpgsqlDataSource database, AuditSigningKey key, AuditRetiredKeys retired, TimeProvider time, AuditAnchorFile? anchor = null,
    AuditAnchorPush? push = null)
{
    public AuditPublicKey PublicKey { get; } = new(key.KeyId, "ES256", key.PublicKeySpki, key.PublicKeyPem);

    /// <summary>Keys the server signed with before a rotation; their checkpoints still verify.</summary>
    public IReadOnlyList<AuditPublicKey> RetiredKeys => retired.Keys;

    /// <summary>Signs the tenant's current head; null when the tenant has no events yet.</summary>
    public async Task<AuditCheckpoint?> CreateAsync(string tenantId, CancellationToken ct)
    {
        await using var connection = await database.OpenConnectionAsync(ct);
        long seq;
        string hash;
        await using (var head = new NpgsqlCommand("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1", connection))
        {
            head.Parameters.Add(new NpgsqlParameter { Value = tenantId });
            await using var reader = await head.ExecuteReaderAsync(ct);
            if (!await reader.ReadAsync(ct) || reader.GetInt64(0) == 0)
            {
                return null;
            }

            (seq, hash) = (reader.GetInt64(0), reader.GetString(1));
        }

        var at = AuditHash.FormatAt(AuditHash.ToMicroseconds(time.GetUtcNow()));
        bool inserted;
        var signature = Convert.ToBase64String(key.Sign(AuditCheckpointSignature.SignedBytes(tenantId, seq, hash, at)));
        await using (var insert = new NpgsqlCommand("""
            INSERT INTO audit_checkpoints (tenant_id, seq, hash, at, key_id, signature) VALUES ($1, $2, $3, $4::timestamptz, $5, $6)
            ON CONFLICT (tenant_id, seq) DO NOTHING
            """, connection))
        {
            insert.Parameters.Add(new NpgsqlParameter { Value = tenantId });
            insert.Parameters.Add(new NpgsqlParameter { Value = seq });
            insert.Parameters.Add(new NpgsqlParameter { Value = hash });
            insert.Parameters.Add(new NpgsqlParameter { Value = at });
            insert.Parameters.Add(new NpgsqlParameter { Value = key.KeyId });
            insert.Parameters.Add(new NpgsqlParameter { Value = signature });
            inserted = await insert.ExecuteNonQueryAsync(ct) == 1;
        }

        // An earlier checkpoint at the same seq stays the one of record.
        var page = await ListAsync(connection, tenantId, seq - 1, 1, ct);
        if (inserted && anchor is not null)
        {
            await anchor.AppendAsync(page[0], ct);
        }

        if (inserted)
        {
            push?.Enqueue(page[0]);
        }

        return page[0];
    }

    /// <summary>The tenant's checkpoints, oldest first, after <paramref name="after"/>.</summary>
    public async Task<IReadOnlyList<AuditCheckpoint>> ListAsync(string tenantId, long after, int limit, CancellationToken ct)
    {
        await using var connection = await database.OpenConnectionAsync(ct);
        return await ListAsync(connection, tenantId, after, limit, ct);
    }

    /// <summary>Tenants whose head moved past their last checkpoint.</summary>
    public async Task<IReadOnlyList<string>> TenantsDueAsync(CancellationToken ct)
    {
        await using var connection = await database.OpenConnectionAsync(ct);
        await using var command = new NpgsqlCommand("""
            SELECT h.tenant_id FROM audit_heads h
            WHERE h.seq > COALESCE((SELECT max(c.seq) FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id), 0)
            """, connection);
        var tenants = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            tenants.Add(reader.GetString(0));
        }

        return tenants;
    }

    /// <summary>True when the checkpoint was signed, over exactly these values, by this server's key or a retired one.</summary>
    public bool IsAuthentic(AuditCheckpoint checkpoint)
    {
        Span<byte> signature = stackalloc byte[128];
        if (!Convert.TryFromBase64String(checkpoint.Signature, signature, out var length))
        {
            return false;
        }

        var signed = AuditCheckpointSignature.SignedBytes(checkpoint.Tenant, checkpoint.Seq, checkpoint.Hash, checkpoint.At);
        return checkpoint.KeyId == key.KeyId
            ? key.Verify(signed, signature[..length])
            : retired.Verify(checkpoint.KeyId, signed, signature[..length]);
    }

    internal static async Task<List<AuditCheckpoint>> ListAsync(
        NpgsqlConnection connection, string tenantId, long after, int limit, CancellationToken ct, NpgsqlTransaction? transaction = null)
    {
        await using var command = new NpgsqlCommand("""
            SELECT tenant_id, seq, hash, at, key_id, signature FROM audit_checkpoints
            WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
            """, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = tenantId });
        command.Parameters.Add(new NpgsqlParameter { Value = after });
        command.Parameters.Add(new NpgsqlParameter { Value = limit });
        var checkpoints = new List<AuditCheckpoint>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            checkpoints.Add(FromRow(reader));
        }

        return checkpoints;
    }

    /// <summary>A checkpoint from a row of <c>tenant_id, seq, hash, at, key_id, signature</c>, in that order.</summary>
    internal static AuditCheckpoint FromRow(NpgsqlDataReader reader) =>
        new(reader.GetString(0), reader.GetInt64(1), reader.GetString(2),
            AuditHash.FormatAt(reader.GetFieldValue<DateTimeOffset>(3)), reader.GetString(4), reader.GetString(5));
}

/// <summary>Signs a checkpoint every <c>Harness:Audit:CheckpointInterval</c> for each tenant whose head moved.</summary>
internal sealed class AuditCheckpointService(
    AuditCheckpoints checkpoints,
    Microsoft.Extensions.Options.IOptions<AuditOptions> options,
    TimeProvider time,
    ILogger<AuditCheckpointService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.CheckpointInterval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                foreach (var tenant in await checkpoints.TenantsDueAsync(stoppingToken))
                {
                    await checkpoints.CreateAsync(tenant, stoppingToken);
                }
            }
            catch (Exception exception) when (exception is not OperationCanceledException)
            {
                logger.LogError(exception, "Signing audit checkpoints failed; retrying at the next interval");
            }
        }
    }
}
