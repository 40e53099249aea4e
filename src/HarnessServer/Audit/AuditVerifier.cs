using System.Buffers;
using System.Data;
using System.Diagnostics;
using System.Security.Cryptography;
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
internal sealed class AuditVerifier(NpgsqlDataSource database, AuditCheckpoints checkpoints)
{
    private const int BatchSize = 10_000;

    public async Task<AuditVerification> VerifyAsync(string tenantId, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        await using var connection = await database.OpenConnectionAsync(ct);
        await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, ct);

        var (headSeq, headHash) = await ReadHeadAsync(connection, transaction, tenantId, ct);
        var signed = await AuditCheckpoints.ListAsync(connection, tenantId, 0, int.MaxValue, ct, transaction);
        var state = new ChainState(tenantId);
        AuditCheckpoint? reached = null;

        foreach (var checkpoint in signed)
        {
            if (!checkpoints.IsAuthentic(checkpoint))
            {
                return Done(state.Fail(checkpoint.Seq, $"The checkpoint at seq {checkpoint.Seq} is not signed by this server's key ({checkpoints.PublicKey.KeyId})."));
            }
        }

        var nextCheckpoint = 0;
        await using (var command = new NpgsqlCommand("""
            SELECT seq, at, actor_id, actor_name, session_id, type, tool, decision::text, payload::text, payload_hash, prev_hash, hash
            FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
            """, connection, transaction))
        {
            var after = new NpgsqlParameter<long>();
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
            command.Parameters.Add(after);
            command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = BatchSize });
            await command.PrepareAsync(ct);
            while (true)
            {
                after.TypedValue = state.LastSeq;
                var rows = 0;
                await using (var reader = await command.ExecuteReaderAsync(CommandBehavior.SequentialAccess, ct))
                {
                    while (await reader.ReadAsync(ct))
                    {
                        rows++;
                        if (!state.Check(reader))
                        {
                            return Done(state);
                        }

                        while (nextCheckpoint < signed.Count && signed[nextCheckpoint].Seq <= state.LastSeq)
                        {
                            var checkpoint = signed[nextCheckpoint++];
                            if (checkpoint.Seq == state.LastSeq && checkpoint.Hash != state.LastHash)
                            {
                                return Done(state.Fail(checkpoint.Seq, $"Seq {checkpoint.Seq} differs from the signed checkpoint of {checkpoint.At}."));
                            }

                            reached = checkpoint;
                        }
                    }
                }

                if (rows < BatchSize)
                {
                    break;
                }
            }
        }

        if (nextCheckpoint < signed.Count)
        {
            var checkpoint = signed[^1];
            return Done(state.Fail(state.LastSeq + 1,
                $"The chain ends at seq {state.LastSeq}, but a checkpoint signed at {checkpoint.At} covers seq {checkpoint.Seq}: events were removed from the tail."));
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
                s.FirstInvalidSeq is null ? reached : null);
        }
    }

    private static async Task<(long Seq, string Hash)> ReadHeadAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string tenantId, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = tenantId });
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? (reader.GetInt64(0), reader.GetString(1)) : (0, AuditHash.Genesis);
    }

    /// <summary>The running state of one pass: the last good event, and the first failure.</summary>
    private sealed class ChainState(string tenantId)
    {
        private readonly ArrayBufferWriter<byte> _scratch = new(4096);
        private readonly ArrayBufferWriter<byte> _payload = new(4096);
        private readonly Dictionary<string, byte[]> _decisions = new(StringComparer.Ordinal);
        private long _atTicks = -1;
        private string _atText = "";

        public long LastSeq { get; private set; }
        public string LastHash { get; private set; } = AuditHash.Genesis;
        public long Checked { get; private set; }
        public long? FirstInvalidSeq { get; private set; }
        public string? Reason { get; private set; }

        public ChainState Fail(long seq, string reason)
        {
            FirstInvalidSeq ??= seq;
            Reason ??= reason;
            return this;
        }

        public bool Check(NpgsqlDataReader reader)
        {
            var seq = reader.GetInt64(0);
            var expected = LastSeq + 1;
            if (seq != expected)
            {
                Fail(expected, $"Seq {expected} is missing (the next event has seq {seq}).");
                return false;
            }

            var at = reader.GetFieldValue<DateTime>(1);
            if (at.Ticks != _atTicks)
            {
                _atTicks = at.Ticks;
                _atText = AuditHash.FormatAt(new DateTimeOffset(at.Ticks, TimeSpan.Zero));
            }

            var actorId = reader.GetString(2);
            var actorName = reader.GetString(3);
            Guid? session = reader.IsDBNull(4) ? null : reader.GetGuid(4);
            var type = reader.GetString(5);
            var tool = reader.IsDBNull(6) ? null : reader.GetString(6);
            var decision = reader.IsDBNull(7) ? null : Decision(reader.GetString(7));
            var payload = reader.IsDBNull(8) ? null : reader.GetString(8);
            var payloadHash = reader.GetString(9);
            var prevHash = reader.GetString(10);
            var hash = reader.GetString(11);

            if (prevHash != LastHash)
            {
                Fail(seq, $"Seq {seq}'s prevHash does not match the hash of seq {LastSeq}.");
                return false;
            }

            var fields = new AuditEventFields(seq, tenantId, _atText, actorId, actorName, session, type, tool, decision, payloadHash, prevHash);
            Span<char> computed = stackalloc char[AuditHash.HexLength];
            AuditHash.Compute(fields, _scratch, computed);
            if (!computed.SequenceEqual(hash))
            {
                Fail(seq, $"Seq {seq}'s hash does not match its content.");
                return false;
            }

            // A NULL payload was redacted on purpose; any payload still present must match the chained payloadHash.
            if (payload is not null && !PayloadMatches(payload, payloadHash))
            {
                Fail(seq, $"Seq {seq}'s payload does not match its payloadHash.");
                return false;
            }

            LastSeq = seq;
            LastHash = hash;
            Checked++;
            return true;
        }

        // Decisions repeat (the same rule decides many calls), so their canonical form is cached by jsonb text.
        private byte[] Decision(string json)
        {
            if (_decisions.TryGetValue(json, out var canonical))
            {
                return canonical;
            }

            var buffer = new ArrayBufferWriter<byte>(json.Length);
            CanonicalJson.WriteText(json, buffer);
            canonical = buffer.WrittenSpan.ToArray();
            if (_decisions.Count < 4096)
            {
                _decisions[json] = canonical;
            }

            return canonical;
        }

        private bool PayloadMatches(string json, string payloadHash)
        {
            _payload.ResetWrittenCount();
            CanonicalJson.WriteText(json, _payload);
            Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
            SHA256.HashData(_payload.WrittenSpan, digest);
            Span<char> hex = stackalloc char[AuditHash.HexLength];
            Convert.TryToHexStringLower(digest, hex, out _);
            return hex.SequenceEqual(payloadHash);
        }
    }
}
