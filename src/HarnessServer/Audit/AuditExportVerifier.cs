using System.Globalization;
using System.Text.Json;

namespace HarnessServer.Audit;

/// <summary>
/// Verifies an export (the JSON Lines of <c>GET /v1/audit/export</c>, from seq 1) with no server and no database:
/// each line becomes the row the database verifier reads and goes through the same <see cref="AuditChainState"/>
/// checks (seq continuity, prevHash links, every hash, every unredacted payload), and the chain must reach and agree
/// with every given checkpoint whose ES256 signature verifies under one of <c>keys</c> (DER SubjectPublicKeyInfo).
/// The harness CLI's <c>audit verify</c> compiles this file in.
/// </summary>
internal static class AuditExportVerifier
{
    private const int BatchSize = 10_000;

    public static async Task<AuditVerification> VerifyAsync(
        TextReader export, IReadOnlyList<AuditCheckpoint> checkpoints, IReadOnlyList<byte[]> keys, CancellationToken ct)
    {
        // The export's tenant is its first line's; the checkpoints must all be of it and verify before any line counts.
        var first = await NextAsync(export, 0, ct);
        var tenant = first.Tenant ?? checkpoints.FirstOrDefault()?.Tenant ?? "";
        var signed = checkpoints.Where(c => c.Tenant == tenant).OrderBy(c => c.Seq).ToList();
        var state = new AuditChainState(tenant, signed);
        if (checkpoints.FirstOrDefault(c => c.Tenant != tenant) is { } foreign)
        {
            return Done(state.Fail(foreign.Seq, $"The checkpoint at seq {foreign.Seq} is of tenant '{foreign.Tenant}', not of the export's '{tenant}'."));
        }

        foreach (var checkpoint in signed)
        {
            if (!keys.Any(key => AuditCheckpointSignature.Verify(checkpoint, key)))
            {
                return Done(state.Fail(checkpoint.Seq, $"The checkpoint at seq {checkpoint.Seq} (key {checkpoint.KeyId}) is not signed by the given key."));
            }
        }

        var batch = new AuditEventRow[BatchSize];
        var count = 0;
        var next = first;
        while (true)
        {
            if (next.Row is { } row && next.Tenant != tenant)
            {
                next = next with { Row = null, Problem = $"Line {next.Number} (seq {row.Seq}) is of tenant '{next.Tenant}', the export's first line of '{tenant}'." };
            }

            if (next.Row is { } good)
            {
                batch[count++] = good;
            }

            if ((next.Row is null || count == BatchSize) && count > 0)
            {
                if (!state.Check(batch, count))
                {
                    return Done(state);
                }

                count = 0;
            }

            if (next.Problem is not null)
            {
                return Done(state.Fail(state.LastSeq + 1, next.Problem));
            }

            if (next.Row is null)
            {
                break;
            }

            next = await NextAsync(export, next.Number, ct);
        }

        if (state.UnreachedCheckpoint is { } unreached)
        {
            return Done(state.Fail(state.LastSeq + 1,
                $"The export ends at seq {state.LastSeq}, but a checkpoint signed at {unreached.At} covers seq {unreached.Seq}: events are missing from the tail."));
        }

        return Done(state);

        static AuditVerification Done(AuditChainState s) => new(s.FirstInvalidSeq is null, s.Checked, s.LastSeq, s.LastHash,
            s.FirstInvalidSeq, s.Reason, s.FirstInvalidSeq is null ? s.Reached : null);
    }

    private readonly record struct ExportLine(int Number, AuditEventRow? Row, string? Tenant, string? Problem);

    // The next non-empty line: its row, or the problem that stops the pass; no row and no problem at the end.
    private static async Task<ExportLine> NextAsync(TextReader export, int line, CancellationToken ct)
    {
        while (await export.ReadLineAsync(ct) is { } text)
        {
            line++;
            if (string.IsNullOrWhiteSpace(text))
            {
                continue;
            }

            return TryRead(text, out var row, out var tenant, out var problem)
                ? new ExportLine(line, row, tenant, null)
                : new ExportLine(line, null, null, $"Line {line} is not an audit event: {problem}");
        }

        return new ExportLine(line, null, null, null);
    }

    // A line as AuditExport writes it. Decision and payload are re-serialized canonically (the database holds them
    // so), and `at` must be in the one form the hash covers: an equivalent time written otherwise is an edit.
    private static bool TryRead(string text, out AuditEventRow row, out string tenant, out string? problem)
    {
        row = default;
        tenant = "";
        try
        {
            using var document = JsonDocument.Parse(text);
            var e = document.RootElement;
            var at = e.GetProperty("at").GetString()!;
            if (!DateTimeOffset.TryParse(at, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var parsed) || AuditHash.FormatAt(parsed) != at)
            {
                problem = $"at '{at}' is not an RFC 3339 UTC time with microseconds.";
                return false;
            }

            tenant = e.GetProperty("tenant").GetString()!;
            var actor = e.GetProperty("actor");
            var session = e.GetProperty("sessionId");
            var tool = e.GetProperty("tool");
            var decision = e.GetProperty("decision");
            row = new AuditEventRow(
                e.GetProperty("seq").GetInt64(),
                parsed.UtcTicks,
                actor.GetProperty("id").GetString()!,
                actor.GetProperty("name").GetString()!,
                session.ValueKind == JsonValueKind.Null ? null : session.GetGuid(),
                e.GetProperty("type").GetString()!,
                tool.ValueKind == JsonValueKind.Null ? null : tool.GetString(),
                decision.ValueKind == JsonValueKind.Null ? null : System.Text.Encoding.UTF8.GetString(CanonicalJson.Serialize(decision)),
                e.TryGetProperty("payload", out var payload) ? System.Text.Encoding.UTF8.GetString(CanonicalJson.Serialize(payload)) : null,
                e.GetProperty("payloadHash").GetString()!,
                e.GetProperty("prevHash").GetString()!,
                e.GetProperty("hash").GetString()!);
            problem = null;
            return true;
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            problem = ex.Message;
            return false;
        }
    }
}
