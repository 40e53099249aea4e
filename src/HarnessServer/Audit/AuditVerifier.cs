using System.Buffers;
using System.Data;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Serialization;
using Npgsql;

namespace HarnessServer.Audit;

/// <summary>
/// Recomputes a tenant's chain from the database in one consistent snapshot, streaming it by seq in batches: seq
/// continuity, prevHash links, every hash, every unredacted payload against its payloadHash, the head row, and the
/// signed checkpoints (their signatures, and that the chain reaches and agrees with each of them).
/// </summary>
/// <remarks>
/// Each event's hash depends only on its own row (its stored prevHash included), so hashes are recomputed in parallel
/// while the next batch is read; only the cheap link checks (seq, prevHash = previous hash) run in order.
/// </remarks>
internal sealed class AuditVerifier(NpgsqlDataSource database, AuditCheckpoints checkpoints)
{
    private const int BatchSize = 10_000;

    /// <param name="anchor">A checkpoint kept outside the database (a line of the anchor file) the chain must reach and agree with.</param>
    public async Task<AuditVerification> VerifyAsync(string tenantId, CancellationToken ct, AuditCheckpoint? anchor = null)
    {
        var started = Stopwatch.GetTimestamp();
        await using var connection = await database.OpenConnectionAsync(ct);
        await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, ct);

        var (headSeq, headHash) = await ReadHeadAsync(connection, transaction, tenantId, ct);
        var signed = await AuditCheckpoints.ListAsync(connection, tenantId, 0, int.MaxValue, ct, transaction);
        if (anchor is not null && !signed.Contains(anchor))
        {
            signed.Add(anchor);
            signed.Sort((a, b) => a.Seq.CompareTo(b.Seq));
        }

        var state = new AuditChainState(tenantId, signed);
        if (anchor is not null && anchor.Tenant != tenantId)
        {
            return Done(state.Fail(anchor.Seq, $"The checkpoint is of tenant '{anchor.Tenant}', not of this one."));
        }

        foreach (var checkpoint in signed)
        {
            if (!checkpoints.IsAuthentic(checkpoint))
            {
                return Done(state.Fail(checkpoint.Seq, $"The checkpoint at seq {checkpoint.Seq} (key {checkpoint.KeyId}) is not signed by this server's key ({checkpoints.PublicKey.KeyId}) or a retired one."));
            }
        }

        await using (var command = new NpgsqlCommand("""
            SELECT seq, at, actor_id, actor_name, session_id, type, tool, decision, payload, payload_hash, prev_hash, hash
            FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
            """, connection, transaction))
        {
            var after = new NpgsqlParameter<long>();
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
            command.Parameters.Add(after);
            command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = BatchSize });
            await command.PrepareAsync(ct);
            Task<bool> checking = Task.FromResult(true);
            while (true)
            {
                var rows = new AuditEventRow[BatchSize];
                var count = 0;
                await using (var reader = await command.ExecuteReaderAsync(CommandBehavior.SequentialAccess, ct))
                {
                    while (await reader.ReadAsync(ct))
                    {
                        rows[count++] = Read(reader);
                    }
                }

                if (!await checking)
                {
                    return Done(state);
                }

                if (count == 0)
                {
                    break;
                }

                after.TypedValue = rows[count - 1].Seq;
                var batch = rows;
                var length = count;
                checking = Task.Run(() => state.Check(batch, length), ct);
                if (count < BatchSize)
                {
                    if (!await checking)
                    {
                        return Done(state);
                    }

                    break;
                }
            }
        }

        if (state.UnreachedCheckpoint is { } unreached)
        {
            return Done(state.Fail(state.LastSeq + 1,
                $"The chain ends at seq {state.LastSeq}, but a checkpoint signed at {unreached.At} covers seq {unreached.Seq}: events were removed from the tail."));
        }

        if (headSeq > state.LastSeq)
        {
            return Done(state.Fail(state.LastSeq + 1, $"The chain ends at seq {state.LastSeq}, but its head is at seq {headSeq}: events were removed from the tail."));
        }

        if (headSeq < state.LastSeq || headHash != state.LastHash)
        {
            return Done(state.Fail(headSeq + 1, $"The chain runs past its head (seq {headSeq}): events were added outside the audit writer."));
        }

        return Done(state);

        AuditVerification Done(AuditChainState s)
        {
            AuditMetrics.VerifyDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return new AuditVerification(s.FirstInvalidSeq is null, s.Checked, headSeq, headHash, s.FirstInvalidSeq, s.Reason,
                s.FirstInvalidSeq is null ? s.Reached : null);
        }
    }

    /// <summary>
    /// Checks one event where it stands: its own hash and payload hash recomputed, and its links to the events either
    /// side (its prevHash is the previous event's hash, the next event's prevHash is its hash). Null when it does not
    /// exist. This says nothing of the rest of the chain; <see cref="VerifyAsync"/> does.
    /// </summary>
    public async Task<AuditEventCheck?> CheckEventAsync(string tenantId, long seq, CancellationToken ct)
    {
        await using var connection = await database.OpenConnectionAsync(ct);
        await using var command = new NpgsqlCommand("""
            SELECT seq, at, actor_id, actor_name, session_id, type, tool, decision, payload, payload_hash, prev_hash, hash
            FROM audit_events WHERE tenant_id = $1 AND seq BETWEEN $2 - 1 AND $2 + 1 ORDER BY seq
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = seq });
        AuditEventRow? previous = null, row = null, next = null;
        await using (var reader = await command.ExecuteReaderAsync(CommandBehavior.SequentialAccess, ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var read = Read(reader);
                if (read.Seq < seq)
                {
                    previous = read;
                }
                else if (read.Seq == seq)
                {
                    row = read;
                }
                else
                {
                    next = read;
                }
            }
        }

        if (row is not { } e)
        {
            return null;
        }

        var own = new AuditRowHasher(tenantId).Check(e);
        var expectedPrevious = seq == 1 ? AuditHash.Genesis : previous?.Hash;
        return new AuditEventCheck(
            seq,
            own != AuditRowCheck.HashMismatch,
            e.Payload is null ? null : own == AuditRowCheck.Good,
            expectedPrevious is not null && expectedPrevious == e.PrevHash,
            next is { } n ? n.PrevHash == e.Hash : null,
            seq > 1 && previous is not null,
            next is not null);
    }

    private static async Task<(long Seq, string Hash)> ReadHeadAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string tenantId, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = tenantId });
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? (reader.GetInt64(0), reader.GetString(1)) : (0, AuditHash.Genesis);
    }

    private static AuditEventRow Read(NpgsqlDataReader reader) => new(
        reader.GetInt64(0),
        reader.GetFieldValue<DateTime>(1).Ticks,
        reader.GetString(2),
        reader.GetString(3),
        reader.IsDBNull(4) ? null : reader.GetGuid(4),
        reader.GetString(5),
        reader.IsDBNull(6) ? null : reader.GetString(6),
        reader.IsDBNull(7) ? null : reader.GetString(7),
        reader.IsDBNull(8) ? null : reader.GetString(8),
        reader.GetString(9),
        reader.GetString(10),
        reader.GetString(11));
}

/// <summary>
/// One event checked where it stands. <see cref="PayloadMatches"/> is null for a redacted payload, <see cref="LinkedFromNext"/>
/// when it is the last event. <see cref="Intact"/> only when all of it holds.
/// </summary>
internal sealed record AuditEventCheck(
    long Seq, bool HashMatches, bool? PayloadMatches, bool LinkedToPrevious, bool? LinkedFromNext, bool HasPrevious, bool HasNext)
{
    public bool Intact => HashMatches && PayloadMatches is not false && LinkedToPrevious && LinkedFromNext is not false;
}
