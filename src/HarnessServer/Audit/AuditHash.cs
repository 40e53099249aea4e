using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace HarnessServer.Audit;

/// <summary>The fields of one event that its hash covers (every field of the export line but <c>hash</c> and <c>payload</c>).</summary>
internal readonly record struct AuditEventFields(
    long Seq,
    string Tenant,
    string At,
    string ActorId,
    string ActorName,
    Guid? SessionId,
    string Type,
    string? Tool,
    ReadOnlyMemory<byte> CanonicalDecision,
    string PayloadHash,
    string PrevHash);

/// <summary>
/// The chain's hash: <c>hash = lowercase hex of SHA-256(UTF-8(prevHash) || UTF-8(JCS(event without hash and payload)))</c>,
/// where prevHash is the previous event's 64-character lowercase hex hash (64 zeros for seq 1), and
/// <c>payloadHash = lowercase hex of SHA-256(UTF-8(JCS(payload)))</c>.
/// </summary>
internal static class AuditHash
{
    public const string Genesis = "0000000000000000000000000000000000000000000000000000000000000000";
    public const int HexLength = 64;

    private static readonly byte[] NullJson = "null"u8.ToArray();

    /// <summary>RFC 3339 UTC with microseconds, the precision PostgreSQL stores.</summary>
    public static string FormatAt(DateTimeOffset at) =>
        at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);

    public static DateTimeOffset ToMicroseconds(DateTimeOffset at) => new(at.UtcTicks - at.UtcTicks % 10, TimeSpan.Zero);

    public static string Hex(ReadOnlySpan<byte> canonicalJson)
    {
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(canonicalJson, digest);
        return Convert.ToHexStringLower(digest);
    }

    /// <summary>Writes the event's hash as 64 lowercase hex characters into <paramref name="hash"/>.</summary>
    public static void Compute(in AuditEventFields e, ArrayBufferWriter<byte> scratch, Span<char> hash)
    {
        scratch.ResetWrittenCount();
        WriteCanonical(e, scratch, withPrevHashPrefix: true);
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(scratch.WrittenSpan, digest);
        Convert.TryToHexStringLower(digest, hash, out _);
    }

    public static string Compute(in AuditEventFields e, ArrayBufferWriter<byte> scratch)
    {
        Span<char> hash = stackalloc char[HexLength];
        Compute(e, scratch, hash);
        return new string(hash);
    }

    /// <summary>The canonical JSON of the event without its hash, optionally preceded by the prevHash bytes.</summary>
    public static void WriteCanonical(in AuditEventFields e, IBufferWriter<byte> output, bool withPrevHashPrefix)
    {
        if (withPrevHashPrefix)
        {
            CanonicalJson.WriteAscii(output, e.PrevHash);
        }

        // Members in JCS order: actor, at, decision, payloadHash, prevHash, seq, sessionId, tenant, tool, type.
        CanonicalJson.WriteAscii(output, "{\"actor\":{\"id\":");
        CanonicalJson.WriteString(e.ActorId, output);
        CanonicalJson.WriteAscii(output, ",\"name\":");
        CanonicalJson.WriteString(e.ActorName, output);
        CanonicalJson.WriteAscii(output, "},\"at\":");
        CanonicalJson.WriteString(e.At, output);
        CanonicalJson.WriteAscii(output, ",\"decision\":");
        output.Write(e.CanonicalDecision.IsEmpty ? NullJson : e.CanonicalDecision.Span);
        CanonicalJson.WriteAscii(output, ",\"payloadHash\":");
        CanonicalJson.WriteString(e.PayloadHash, output);
        CanonicalJson.WriteAscii(output, ",\"prevHash\":");
        CanonicalJson.WriteString(e.PrevHash, output);
        CanonicalJson.WriteAscii(output, ",\"seq\":");
        WriteInteger(e.Seq, output);
        CanonicalJson.WriteAscii(output, ",\"sessionId\":");
        if (e.SessionId is { } session)
        {
            var span = output.GetSpan(38);
            span[0] = (byte)'"';
            session.TryFormat(span[1..], out var written, "D");
            span[written + 1] = (byte)'"';
            output.Advance(written + 2);
        }
        else
        {
            output.Write(NullJson);
        }

        CanonicalJson.WriteAscii(output, ",\"tenant\":");
        CanonicalJson.WriteString(e.Tenant, output);
        CanonicalJson.WriteAscii(output, ",\"tool\":");
        if (e.Tool is null)
        {
            output.Write(NullJson);
        }
        else
        {
            CanonicalJson.WriteString(e.Tool, output);
        }

        CanonicalJson.WriteAscii(output, ",\"type\":");
        CanonicalJson.WriteString(e.Type, output);
        CanonicalJson.WriteAscii(output, "}");
    }

    private static void WriteInteger(long value, IBufferWriter<byte> output)
    {
        var span = output.GetSpan(20);
        value.TryFormat(span, out var written, provider: CultureInfo.InvariantCulture);
        output.Advance(written);
    }

    public static byte[] Utf8(string value) => Encoding.UTF8.GetBytes(value);
}
