using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Http;
using HarnessServer.Identity;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Api;

/// <summary>One event as <c>GET /v1/audit/events</c> shows it (the export line's fields).</summary>
internal sealed record AuditEventView(
    long Seq, string Tenant, string At, AuditActor Actor, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] Guid? SessionId, string Type, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Tool,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] JsonNode? Decision, string PayloadHash, string PrevHash, string Hash, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] JsonNode? Payload);

/// <summary>A page of events; <c>next</c> is the <c>after</c> of the following page, null on the last one.</summary>
internal sealed record AuditEventPage(IReadOnlyList<AuditEventView> Events, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] long? Next);

/// <summary>The checkpoints of the caller's tenant with the keys that verify them (current, and retired by rotations).</summary>
internal sealed record AuditCheckpointPage(AuditPublicKey PublicKey, IReadOnlyList<AuditPublicKey> RetiredKeys, IReadOnlyList<AuditCheckpoint> Checkpoints, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] long? Next);

internal static class AuditEndpoints
{
    private const int DefaultLimit = 100;
    private const int MaxLimit = 1000;

    public static IEndpointRouteBuilder MapAudit(this IEndpointRouteBuilder app)
    {
        var audit = app.MapGroup("/v1/audit").RequireAuthorization(HarnessPolicies.Auditor).WithTags("Audit");

        audit.MapGet("/events", GetEvents)
            .WithName("GetAuditEvents")
            .WithSummary("The tenant's audit events, oldest first, paged by the seq in `after`. `user`, `tool`, `type` match exactly; " +
                         "`outcome` matches `decision.effect` or `payload.status`; `from`/`to` bound `at` (RFC 3339, inclusive).");
        audit.MapGet("/verify", Verify)
            .WithName("VerifyAudit")
            .WithSummary("Recomputes the tenant's chain and checks it against its head and signed checkpoints; `checkpoint` adds one kept outside the database (a line of the anchor file).");
        audit.MapGet("/export", Export)
            .WithName("ExportAudit")
            .WithSummary("The tenant's chain as JSON Lines; `from`/`to` are inclusive seq bounds.")
            .Produces<string>(StatusCodes.Status200OK, "application/x-ndjson");
        audit.MapGet("/checkpoints", GetCheckpoints)
            .WithName("GetAuditCheckpoints")
            .WithSummary("The tenant's signed checkpoints, oldest first, with the public key that verifies them.");
        audit.MapPost("/checkpoints", CreateCheckpoint)
            .WithName("CreateAuditCheckpoint")
            .WithSummary("Signs a checkpoint of the tenant's current head now.");
        return app;
    }

    private static async Task<Results<Ok<AuditEventPage>, ProblemHttpResult>> GetEvents(
        HarnessDbContext db, string? user, string? tool, string? outcome, string? type,
        DateTimeOffset? from, DateTimeOffset? to, long? after, int? limit, CancellationToken ct)
    {
        var take = limit ?? DefaultLimit;
        if (take is < 1 or > MaxLimit)
        {
            return Problems.Result(StatusCodes.Status400BadRequest, "invalid_limit", $"limit must be between 1 and {MaxLimit}.");
        }

        var (rows, next) = await AuditQuery.PageAsync(db, new AuditEventFilter(user, tool, type, outcome, from, to), after ?? 0, take, ct);
        return TypedResults.Ok(new AuditEventPage(rows.Select(View).ToList(), next));
    }

    // ?checkpoint= takes a line of the anchor file (Harness:Audit:AnchorPath): a chain cut back behind it fails.
    private static async Task<Results<Ok<AuditVerification>, ProblemHttpResult>> Verify(
        CurrentUser caller, AuditVerifier verifier, string? checkpoint, CancellationToken ct)
    {
        AuditCheckpoint? anchor = null;
        if (checkpoint is not null && (anchor = AuditAnchorFile.Parse(checkpoint)) is null)
        {
            return Problems.Result(StatusCodes.Status400BadRequest, "invalid_checkpoint",
                "checkpoint must be a signed checkpoint as JSON: {tenant, seq, hash, at, keyId, signature} (a line of the anchor file).");
        }

        return TypedResults.Ok(await verifier.VerifyAsync(caller.TenantId, ct, anchor));
    }

    private static Results<PushStreamHttpResult, ProblemHttpResult> Export(
        CurrentUser caller, AuditExport export, HttpContext context, long? from, long? to)
    {
        if (from is < 1 || to is < 1 || from > to)
        {
            return Problems.Result(StatusCodes.Status400BadRequest, "invalid_range", "from and to are seqs from 1, with from <= to.");
        }

        return TypedResults.Stream(
            stream => export.WriteAsync(caller.TenantId, from ?? 1, to ?? long.MaxValue, stream, context.RequestAborted),
            "application/x-ndjson");
    }

    private static async Task<Results<Ok<AuditCheckpointPage>, ProblemHttpResult>> GetCheckpoints(
        CurrentUser caller, AuditCheckpoints checkpoints, long? after, int? limit, CancellationToken ct)
    {
        var take = limit ?? DefaultLimit;
        if (take is < 1 or > MaxLimit)
        {
            return Problems.Result(StatusCodes.Status400BadRequest, "invalid_limit", $"limit must be between 1 and {MaxLimit}.");
        }

        var page = await checkpoints.ListAsync(caller.TenantId, after ?? 0, take + 1, ct);
        var shown = page.Take(take).ToList();
        return TypedResults.Ok(new AuditCheckpointPage(checkpoints.PublicKey, checkpoints.RetiredKeys, shown, page.Count > take ? shown[^1].Seq : null));
    }

    private static async Task<Results<Ok<AuditCheckpoint>, ProblemHttpResult>> CreateCheckpoint(
        CurrentUser caller, AuditCheckpoints checkpoints, CancellationToken ct) =>
        await checkpoints.CreateAsync(caller.TenantId, ct) is { } checkpoint
            ? TypedResults.Ok(checkpoint)
            : Problems.Result(StatusCodes.Status409Conflict, "audit_chain_empty", "The tenant has no audit events to sign yet.");

    private static AuditEventView View(AuditEventRecord e) => new(
        e.Seq, e.TenantId, AuditHash.FormatAt(e.At), new AuditActor(e.ActorId, e.ActorName), e.SessionId, e.Type, e.Tool,
        e.Decision is null ? null : JsonNode.Parse(e.Decision), e.PayloadHash, e.PrevHash, e.Hash,
        e.Payload is null ? null : JsonNode.Parse(e.Payload));
}
