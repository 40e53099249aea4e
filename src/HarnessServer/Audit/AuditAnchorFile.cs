using System.Text.Json;

namespace HarnessServer.Audit;

/// <summary>
/// Anchors the chains outside the database: every new signed checkpoint is appended, as one JSON line, to
/// <c>Harness:Audit:AnchorPath</c> (opened for append only, one line per checkpoint, so one per tenant and
/// <c>CheckpointInterval</c> at most). A database owner who cuts a chain's tail and its checkpoints cannot reach this
/// file; <c>GET /v1/audit/verify?checkpoint=</c> and <c>verify-audit-export.py --checkpoint</c> check a chain against a
/// line of it (ship the file off the host, e.g. to write-once storage).
/// </summary>
internal sealed class AuditAnchorFile(string? path)
{
    /// <summary>How a checkpoint is written as a line (and pushed by <see cref="AuditAnchorPush"/>).</summary>
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly SemaphoreSlim _gate = new(1, 1);

    public string? Path { get; } = path;

    public async Task AppendAsync(AuditCheckpoint checkpoint, CancellationToken ct)
    {
        if (Path is null)
        {
            return;
        }

        var line = JsonSerializer.SerializeToUtf8Bytes(checkpoint, Json).Append((byte)'\n').ToArray();
        var options = new FileStreamOptions { Mode = FileMode.Append, Access = FileAccess.Write, Share = FileShare.Read };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        await _gate.WaitAsync(ct);
        try
        {
            // O_APPEND: one write per line, so lines of two server processes never interleave.
            await using var file = new FileStream(Path, options);
            await file.WriteAsync(line, ct);
            await file.FlushAsync(ct);
            file.Flush(flushToDisk: true);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>A checkpoint as a line of the anchor file (or the API) gives it; null when it is not one.</summary>
    public static AuditCheckpoint? Parse(string text)
    {
        try
        {
            return JsonSerializer.Deserialize<AuditCheckpoint>(text, Json) is { Tenant: not null, Hash: not null, At: not null, KeyId: not null, Signature: not null } checkpoint
                ? checkpoint
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
