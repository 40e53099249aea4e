using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Serialization;

namespace HarnessServer.Audit;

// The chain checks themselves, with no storage: AuditVerifier feeds them rows of the database, AuditExportVerifier
// lines of an export (the harness CLI compiles this file in, so an offline verify is this code, not a copy of it).

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

/// <summary>One event as the chain checks read it: its stored columns (decision and payload as canonical JSON text).</summary>
internal readonly record struct AuditEventRow(
    long Seq, long AtTicks, string ActorId, string ActorName, Guid? SessionId, string Type, string? Tool,
    string? Decision, string? Payload, string PayloadHash, string PrevHash, string Hash);

internal enum AuditRowCheck : byte
{
    Good,
    HashMismatch,
    PayloadMismatch,
}

/// <summary>Recomputes the hashes of one row at a time with its own buffers (one per worker thread).</summary>
internal sealed class AuditRowHasher(string tenantId)
{
    private readonly ArrayBufferWriter<byte> _scratch = new(4096);
    private readonly ArrayBufferWriter<byte> _decision = new(1024);
    private readonly ArrayBufferWriter<byte> _payload = new(4096);
    private long _atTicks = -1;
    private string _atText = "";

    public AuditRowCheck Check(in AuditEventRow row)
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
            return AuditRowCheck.HashMismatch;
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
                return AuditRowCheck.PayloadMismatch;
            }
        }

        return AuditRowCheck.Good;
    }

    private static ReadOnlyMemory<byte> Utf8(string text, ArrayBufferWriter<byte> buffer)
    {
        buffer.ResetWrittenCount();
        buffer.Advance(Encoding.UTF8.GetBytes(text, buffer.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length))));
        return buffer.WrittenMemory;
    }
}

/// <summary>The running state of one pass: the last good event, the checkpoints met, and the first failure.</summary>
internal sealed class AuditChainState(string tenantId, List<AuditCheckpoint> signed)
{
    private int _nextCheckpoint;

    public long LastSeq { get; private set; }
    public string LastHash { get; private set; } = AuditHash.Genesis;
    public long Checked { get; private set; }
    public long? FirstInvalidSeq { get; private set; }
    public string? Reason { get; private set; }
    public AuditCheckpoint? Reached { get; private set; }
    public AuditCheckpoint? UnreachedCheckpoint => _nextCheckpoint < signed.Count ? signed[^1] : null;

    public AuditChainState Fail(long seq, string reason)
    {
        FirstInvalidSeq ??= seq;
        Reason ??= reason;
        return this;
    }

    /// <summary>Checks one batch after the previous ones; false at the first bad event.</summary>
    public bool Check(AuditEventRow[] rows, int count)
    {
        var content = new AuditRowCheck[count];
        Parallel.For(0, count, () => new AuditRowHasher(tenantId), (i, _, hasher) =>
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
                case AuditRowCheck.HashMismatch:
                    Fail(row.Seq, $"Seq {row.Seq}'s hash does not match its content.");
                    return false;
                case AuditRowCheck.PayloadMismatch:
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
