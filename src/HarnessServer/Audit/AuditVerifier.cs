using System.Buffers;
using System.Data;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Serialization;
using Npgsql;

namespace HarnessServer.Audit;

/// <summary>The outcome of verifying one tenant's chain.</summary>
/// <param name="Checked">Events whose hash was recomputed and found good.</param>
/// <param name="FirstInvalidSeq">The first seq that is missing, altered, out of place or contradicts a checkpoint.</param>
/// <param name="Checkpoint">The latest authentic checkpoint the chain was checked against.</param>
internal sealed record AuditVerification(
    bool Valid,
    long Checked,
    long HeadSeq,
    string HeadHash,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] long? FirstInvalidSeq,
    string? Reason,
    AuditCheckpoint? Checkpoint);

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

        var state = new ChainState(tenantId, signed);
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
                var rows = new EventRow[BatchSize];
                var count = 0;
                await using (var reader = await command.ExecuteReaderAsync(CommandBehavior.SequentialAccess, ct))
                {
                    while (await reader.ReadAsync(ct))
                    {
                        rows[count++] = EventRow.Read(reader);
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

        AuditVerification Done(ChainState s)
        {
            AuditMetrics.VerifyDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return new AuditVerification(s.FirstInvalidSeq is null, s.Checked, headSeq, headHash, s.FirstInvalidSeq, s.Reason,
                s.FirstInvalidSeq is null ? s.Reached : null);
        }
    }

    private static async Task<(long Seq, string Hash)> ReadHeadAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string tenantId, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = tenantId });
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? (reader.GetInt64(0), reader.GetString(1)) : (0, AuditHash.Genesis);
    }

    private readonly record struct EventRow(
        long Seq, long AtTicks, string ActorId, string ActorName, Guid? SessionId, string Type, string? Tool,
        string? Decision, string? Payload, string PayloadHash, string PrevHash, string Hash)
    {
        public static EventRow Read(NpgsqlDataReader reader) => new(
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

    private enum RowCheck : byte
    {
        Good,
        HashMismatch,
        PayloadMismatch,
    }

    /// <summary>Recomputes the hashes of one row at a time with its own buffers (one per worker thread).</summary>
    private sealed class RowHasher(string tenantId)
    {
        private readonly ArrayBufferWriter<byte> _scratch = new(4096);
        private readonly ArrayBufferWriter<byte> _decision = new(1024);
        private readonly ArrayBufferWriter<byte> _payload = new(4096);
        private long _atTicks = -1;
        private string _atText = "";

        public RowCheck Check(in EventRow row)
        {
            if (row.AtTicks != _atTicks)
            {
                _atTicks = row.AtTicks;
                _atText = AuditHash.FormatAt(new DateTimeOffset(row.AtTicks, TimeSpan.Zero));
            }

            var decision = row.Decision is null ? default : Utf8(row.Decision, _decision);
            var fields = new AuditEventFields(row.Seq, tenantId, _atText, row.ActorId, row.ActorName, row.SessionId, row.Type, row.Tool,
                decision, row.PayloadHash, row.PrevHash);
            Span<char> computed = stackalloc char[AuditHash.HexLength];
            AuditHash.Compute(fields, _scratch, computed);
            if (!computed.SequenceEqual(row.Hash))
            {
                return RowCheck.HashMismatch;
            }

            // A NULL payload was redacted on purpose. The column holds the canonical text itself, so any other
            // text, even equivalent JSON, is an edit.
            if (row.Payload is not null)
            {
                Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
                SHA256.HashData(Utf8(row.Payload, _payload).Span, digest);
                Convert.TryToHexStringLower(digest, computed, out _);
                if (!computed.SequenceEqual(row.PayloadHash))
                {
                    return RowCheck.PayloadMismatch;
                }
            }

            return RowCheck.Good;
        }

        private static ReadOnlyMemory<byte> Utf8(string text, ArrayBufferWriter<byte> buffer)
        {
            buffer.ResetWrittenCount();
            buffer.Advance(Encoding.UTF8.GetBytes(text, buffer.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length))));
            return buffer.WrittenMemory;
        }
    }

    /// <summary>The running state of one pass: the last good event, the checkpoints met, and the first failure.</summary>
    private sealed class ChainState(string tenantId, List<AuditCheckpoint> signed)
    {
        private int _nextCheckpoint;

        public long LastSeq { get; private set; }
        public string LastHash { get; private set; } = AuditHash.Genesis;
        public long Checked { get; private set; }
        public long? FirstInvalidSeq { get; private set; }
        public string? Reason { get; private set; }
        public AuditCheckpoint? Reached { get; private set; }
        public AuditCheckpoint? UnreachedCheckpoint => _nextCheckpoint < signed.Count ? signed[^1] : null;

        public ChainState Fail(long seq, string reason)
        {
            FirstInvalidSeq ??= seq;
            Reason ??= reason;
            return this;
        }

        /// <summary>Checks one batch after the previous ones; false at the first bad event.</summary>
        public bool Check(EventRow[] rows, int count)
        {
            var content = new RowCheck[count];
            Parallel.For(0, count, () => new RowHasher(tenantId), (i, _, hasher) =>
            {
                content[i] = hasher.Check(rows[i]);
                return hasher;
            }, _ => { });

            for (var i = 0; i < count; i++)
            {
                ref readonly var row = ref rows[i];
                var expected = LastSeq + 1;
                if (row.Seq != expected)
                {
                    Fail(expected, $"Seq {expected} is missing (the next event has seq {row.Seq}).");
                    return false;
                }

                if (row.PrevHash != LastHash)
                {
                    Fail(row.Seq, $"Seq {row.Seq}'s prevHash does not match the hash of seq {LastSeq}.");
                    return false;
                }

                switch (content[i])
                {
                    case RowCheck.HashMismatch:
                        Fail(row.Seq, $"Seq {row.Seq}'s hash does not match its content.");
                        return false;
                    case RowCheck.PayloadMismatch:
                        Fail(row.Seq, $"Seq {row.Seq}'s payload does not match its payloadHash.");
                        return false;
                }

                LastSeq = row.Seq;
                LastHash = row.Hash;
                Checked++;
                while (_nextCheckpoint < signed.Count && signed[_nextCheckpoint].Seq <= LastSeq)
                {
                    var checkpoint = signed[_nextCheckpoint++];
                    if (checkpoint.Seq == LastSeq && checkpoint.Hash != LastHash)
                    {
                        Fail(checkpoint.Seq, $"Seq {checkpoint.Seq} differs from the signed checkpoint of {checkpoint.At}.");
                        return false;
                    }

                    Reached = checkpoint;
                }
            }

            return true;
        }
    }
}
