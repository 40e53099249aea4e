using System.Text.Json;
using HarnessServer.Agents;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Sandbox;
using HarnessServer.Sessions;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Api;

internal static class AgentEndpoints
{
    public static IEndpointRouteBuilder MapAgents(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/sessions/{id:guid}").RequireAuthorization(HarnessPolicies.User).WithTags("Agents");
        group.MapPost("/messages", SendAsync).WithName("SendMessage")
            .WithSummary("One agent turn: the model's calls run through the pipeline until it answers (202 while a call waits for approval).")
            .ProducesProblem(StatusCodes.Status502BadGateway);
        group.MapGet("/messages", HistoryAsync).WithName("GetMessages")
            .WithSummary("The session's agent history, summaries and rolled-back messages included, oldest first; paged by after (a seq) and limit (owner or admin).");
        group.MapGet("/turns/{turnId:guid}", TurnAsync).WithName("GetTurn").WithSummary("One turn's status, reply and tool calls (owner or admin).");
        group.MapGet("/usage", UsageAsync).WithName("GetSessionUsage").WithSummary("Model tokens used by the session's turns (owner or admin).");
        group.MapGet("/checkpoints", CheckpointsAsync).WithName("ListCheckpoints")
            .WithSummary("Workspace checkpoints, each taken just before the call named with it (owner or admin).");
        group.MapPost("/rollback", RollbackAsync).WithName("Rollback")
            .WithSummary("Restore the workspace to a checkpoint exactly and mark the later history rolled back (owner).");
        app.MapGet("/v1/admin/usage", TenantUsageAsync).RequireAuthorization(HarnessPolicies.Admin).WithTags("Agents")
            .WithName("GetTenantUsage")
            .WithSummary("Model tokens used by the tenant's agent turns in [from, to) (default: the last 30 days), per user and model.")
            .ProducesProblem(StatusCodes.Status400BadRequest);
        var settings = app.MapGroup("/v1/admin/agent-settings").RequireAuthorization(HarnessPolicies.Admin).WithTags("Agents");
        settings.MapGet("/", async (CurrentUser user, AgentSettingsService service, CancellationToken ct) =>
                TypedResults.Ok(await service.GetAsync(user.TenantId, ct)))
            .WithName("GetAgentSettings").WithSummary("The tenant's agent settings: memory retrieval into turns (off by default).");
        settings.MapPut("/", async (AgentSettingsBody body, CurrentUser user, AgentSettingsService service, CancellationToken ct) =>
                TypedResults.Ok(await service.UpdateAsync(user, body, ct)))
            .WithName("PutAgentSettings").WithSummary("Change the tenant's agent settings (fields left out keep their value); audited.")
            .ProducesProblem(StatusCodes.Status400BadRequest);
        return app;
    }

    private static async Task<Results<Ok<TurnView>, Accepted<TurnView>>> SendAsync(
        Guid id, MessageBody body, CurrentUser user, AgentTurns turns, IHostApplicationLifetime lifetime)
    {
        if (string.IsNullOrWhiteSpace(body.Content))
        {
            throw new HarnessError(ErrorKind.Invalid, "missing_content", "The body must carry the message as 'content'.");
        }

        // The turn is not abandoned when the client goes away: it is stored step by step and finishes on its own.
        var result = await turns.SendAsync(user, id, body.Content, lifetime.ApplicationStopping);
        if (result.Status == TurnStatus.Failed)
        {
            throw new TurnFailedException(id, result);
        }

        var view = TurnView.Of(result);
        return result.Status == TurnStatus.WaitingForApproval
            ? TypedResults.Accepted($"/v1/sessions/{id}/turns/{result.TurnId}", view)
            : TypedResults.Ok(view);
    }

    private static async Task<Ok<TurnView>> TurnAsync(Guid id, Guid turnId, CurrentUser user, HarnessDbContext db, AgentTurns turns, CancellationToken ct)
    {
        await VisibleSessionAsync(db, id, user, ct);
        var turn = await db.AgentTurns.AsNoTracking().FirstOrDefaultAsync(t => t.Id == turnId && t.SessionId == id, ct)
            ?? throw new HarnessError(ErrorKind.NotFound, "turn_not_found", $"Turn {turnId} does not exist.");
        return TypedResults.Ok(TurnView.Of(await turns.ResultAsync(turn, ct)));
    }

    private const int MaxMessagesPage = 1000;

    // Without after/limit the whole history, as before; with them one page after the message with seq 'after'.
    private static async Task<Ok<List<MessageView>>> HistoryAsync(Guid id, long? after, int? limit, CurrentUser user, HarnessDbContext db, CancellationToken ct)
    {
        if (limit is < 1 or > MaxMessagesPage)
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_limit", $"limit is {limit}; it must be between 1 and {MaxMessagesPage}.");
        }

        await VisibleSessionAsync(db, id, user, ct);
        var query = db.AgentMessages.AsNoTracking().Where(m => m.SessionId == id);
        if (after is { } seq)
        {
            query = query.Where(m => m.Seq > seq);
        }

        query = query.OrderBy(m => m.Seq);
        var messages = await (limit is { } n ? query.Take(n) : query).ToListAsync(ct);
        return TypedResults.Ok(messages.Select(MessageView.Of).ToList());
    }

    private static async Task<Ok<UsageView>> UsageAsync(Guid id, CurrentUser user, HarnessDbContext db, CancellationToken ct)
    {
        await VisibleSessionAsync(db, id, user, ct);
        var calls = await db.ModelCalls.AsNoTracking().Where(c => c.SessionId == id)
            .GroupBy(c => c.Purpose)
            .Select(g => new UsageLine(g.Key, g.Count(), g.Sum(c => c.InputTokens), g.Sum(c => c.OutputTokens)))
            .ToListAsync(ct);
        return TypedResults.Ok(new UsageView(calls.Sum(c => c.Calls), calls.Sum(c => c.InputTokens), calls.Sum(c => c.OutputTokens), calls));
    }

    private static async Task<Ok<TenantUsageView>> TenantUsageAsync(
        DateTimeOffset? from, DateTimeOffset? to, CurrentUser user, HarnessDbContext db, TimeProvider time, CancellationToken ct)
    {
        var until = to ?? time.GetUtcNow();
        var since = from ?? until.AddDays(-30);
        if (since >= until)
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_range", $"from ({since:O}) must be before to ({until:O}).");
        }

        var lines = await db.ModelCalls.AsNoTracking()
            .Where(c => c.CreatedAt >= since && c.CreatedAt < until)
            .GroupBy(c => new { c.UserId, c.Model })
            .Select(g => new UserUsageLine(g.Key.UserId, g.Key.Model, g.Count(), g.Sum(c => (long)c.InputTokens), g.Sum(c => (long)c.OutputTokens)))
            .ToListAsync(ct);
        lines = [.. lines.OrderBy(l => l.User, StringComparer.Ordinal).ThenBy(l => l.Model, StringComparer.Ordinal)];
        return TypedResults.Ok(new TenantUsageView(since, until, lines.Sum(l => l.Calls), lines.Sum(l => l.InputTokens), lines.Sum(l => l.OutputTokens), lines));
    }

    private static async Task<Ok<List<CheckpointView>>> CheckpointsAsync(Guid id, CurrentUser user, HarnessDbContext db, CancellationToken ct)
    {
        await VisibleSessionAsync(db, id, user, ct);
        var checkpoints = await (
            from c in db.WorkspaceCheckpoints.AsNoTracking()
            join call in db.ToolCalls.AsNoTracking() on c.ToolCallId equals call.Id
            where c.SessionId == id
            orderby c.CreatedAt, c.Id
            select new { c, call }).ToListAsync(ct);
        return TypedResults.Ok(checkpoints.Select(x => new CheckpointView(
            x.c.Id, x.c.CreatedAt, x.c.Files, x.c.Bytes, x.c.Skipped, x.c.RestoredAt,
            new CheckpointCall(x.call.Id, x.call.Tool, AuditViews.Status(x.call.Status), x.call.Arguments.RootElement))).ToList());
    }

    private static async Task<Ok<RollbackView>> RollbackAsync(Guid id, RollbackBody body, CurrentUser user, SessionRollback rollback, CancellationToken ct) =>
        TypedResults.Ok(await rollback.RollbackAsync(user, id, body.Checkpoint, ct));

    // Owners see their sessions and admins their tenant's; to anyone else a session does not exist.
    private static async Task<Session> VisibleSessionAsync(HarnessDbContext db, Guid id, CurrentUser user, CancellationToken ct)
    {
        var session = await db.Sessions.AsNoTracking().FirstOrDefaultAsync(s => s.Id == id, ct);
        return session is not null && (session.OwnerUserId == user.UserId || user.IsAdmin)
            ? session
            : throw new HarnessError(ErrorKind.NotFound, "session_not_found", $"Session {id} does not exist.");
    }
}

/// <summary>
/// A turn the model endpoint failed after the resilience handler's retries: <c>502 model_failed</c>, naming the stored
/// turn and the calls that ran before the failure, so the client can read them and send the message again.
/// </summary>
internal sealed class TurnFailedException(Guid sessionId, TurnResult result)
    : HarnessError(ErrorKind.UpstreamFailed, "model_failed", result.Error ?? "The model endpoint failed.", "Model call failed")
{
    public override IReadOnlyDictionary<string, object?> Extensions => new Dictionary<string, object?>
    {
        ["turnId"] = result.TurnId,
        ["turn"] = $"/v1/sessions/{sessionId}/turns/{result.TurnId}",
        ["toolCalls"] = result.ToolCalls,
    };
}

/// <summary>The body of <c>POST /v1/sessions/{id}/messages</c>.</summary>
internal sealed record MessageBody(string Content);

/// <summary>The body of <c>POST /v1/sessions/{id}/rollback</c>.</summary>
internal sealed record RollbackBody(Guid Checkpoint);

/// <summary>The contract's answer of one turn: <c>{ status, reply, toolCalls }</c>, plus its id and error.</summary>
internal sealed record TurnView(Guid TurnId, string Status, string? Reply, IReadOnlyList<JsonElement> ToolCalls, string? Error)
{
    public static TurnView Of(TurnResult result) => new(
        result.TurnId, JsonNamingPolicy.SnakeCaseLower.ConvertName(result.Status.ToString()), result.Reply, result.ToolCalls, result.Error);
}

internal sealed record MessageView(long Seq, Guid TurnId, string Role, string? Content, JsonElement? ToolCalls, string? ToolCallId, string? Tool,
    string? CallStatus, Guid? PipelineCallId, int Tokens, long? SummarizesThroughSeq, bool RolledBack, DateTimeOffset CreatedAt)
{
    public static MessageView Of(AgentMessage m) => new(m.Seq, m.TurnId, m.Role, m.Content,
        m.ToolCalls is null ? null : JsonDocument.Parse(m.ToolCalls).RootElement.Clone(),
        m.ToolCallId, m.ToolName, m.CallStatus, m.PipelineCallId, m.Tokens, m.ThroughSeq, m.RolledBack, m.CreatedAt);
}

internal sealed record UsageLine(string Purpose, int Calls, int InputTokens, int OutputTokens);

internal sealed record UserUsageLine(string User, string Model, int Calls, long InputTokens, long OutputTokens);

internal sealed record TenantUsageView(DateTimeOffset From, DateTimeOffset To, int Calls, long InputTokens, long OutputTokens, IReadOnlyList<UserUsageLine> ByUser);

internal sealed record UsageView(int Calls, int InputTokens, int OutputTokens, IReadOnlyList<UsageLine> ByPurpose);

internal sealed record CheckpointCall(Guid Id, string Tool, string Status, JsonElement Arguments);

internal sealed record CheckpointView(Guid Id, DateTimeOffset CreatedAt, int Files, long Bytes, int Skipped, DateTimeOffset? RestoredAt, CheckpointCall FollowedBy);

