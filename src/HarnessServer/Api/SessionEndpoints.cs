using System.Runtime.CompilerServices;
using System.Text.Json;
using HarnessServer.Agents;
using HarnessServer.Approvals;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Pipeline;
using HarnessServer.Sessions;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Api;

internal static class SessionEndpoints
{
    public static IEndpointRouteBuilder MapSessions(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/sessions").RequireAuthorization(HarnessPolicies.User).WithTags("Sessions");

        group.MapPost("/", CreateAsync).WithName("CreateSession").WithSummary("Create a session with its own workspace.");
        group.MapGet("/{id:guid}", GetAsync).WithName("GetSession").WithSummary("A session with its status, tool-call history and agent conversation, paged past 200 messages (owner or admin).");
        group.MapPost("/{id:guid}/pause", (Guid id, CurrentUser user, SessionService sessions, CancellationToken ct) =>
                sessions.SetStatusAsync(id, user, SessionStatus.Paused, ct))
            .WithName("PauseSession").WithSummary("Pause: new tool calls and turns get 409 until resumed.");
        group.MapPost("/{id:guid}/resume", async (
                Guid id, CurrentUser user, SessionService sessions, Agents.TurnRecovery turns, ApprovalSignal approved, CancellationToken ct) =>
            {
                var resumed = await sessions.SetStatusAsync(id, user, SessionStatus.Active, ct);
                // A turn paused mid-way, and calls approved while paused, continue now rather than at the next pass.
                turns.Wake();
                approved.Raise();
                return resumed;
            })
            .WithName("ResumeSession").WithSummary("Resume a paused session; its paused agent turn and its calls approved meanwhile continue.");
        group.MapPost("/{id:guid}/tool-calls", CallToolAsync).WithName("CallTool")
            .WithSummary("Run one tool call through the pipeline: schema, policy, approval, sandbox, audit.");
        group.MapGet("/{id:guid}/events", StreamEventsAsync).WithName("StreamSessionEvents")
            .WithSummary("Server-Sent Events of the session's tool-call status changes.");
        return app;
    }

    private static async Task<Created<SessionView>> CreateAsync(CurrentUser user, SessionService sessions, CancellationToken ct)
    {
        var session = await sessions.CreateAsync(user, ct);
        return TypedResults.Created($"/v1/sessions/{session.Id}", SessionView.Of(session, []));
    }

    /// <summary>At most this many agent messages ride with a session; the rest are paged on <c>/messages</c>.</summary>
    public const int SessionMessagesPage = 200;

    private static async Task<Ok<SessionDetailView>> GetAsync(Guid id, CurrentUser user, SessionService sessions, HarnessDbContext db, CancellationToken ct)
    {
        var (session, calls) = await sessions.GetWithHistoryAsync(id, user, ct);
        var messages = await db.AgentMessages.AsNoTracking().Where(m => m.SessionId == id).OrderBy(m => m.Seq)
            .Take(SessionMessagesPage + 1).ToListAsync(ct);
        var view = SessionView.Of(session, calls);
        var page = messages.Take(SessionMessagesPage).Select(MessageView.Of).ToList();
        return TypedResults.Ok(new SessionDetailView(view.Id, view.Status, view.Owner, view.CreatedAt, view.ToolCalls, page,
            messages.Count > SessionMessagesPage ? $"/v1/sessions/{id}/messages?after={page[^1].Seq}&limit={SessionMessagesPage}" : null));
    }

    private static async Task<Results<Ok<ToolCallResponse>, Accepted<ToolCallResponse>>> CallToolAsync(
        Guid id, ToolCallBody body, CurrentUser user, ToolCallPipeline pipeline, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(body.Tool))
        {
            throw new HarnessError(ErrorKind.Invalid, "missing_tool", "The body must name a 'tool'.");
        }

        var arguments = body.Arguments is { ValueKind: not JsonValueKind.Undefined and not JsonValueKind.Null } a
            ? a
            : JsonDocument.Parse("{}").RootElement;
        var response = await pipeline.RunAsync(new ToolCallRequest(user, id, body.Tool, arguments), ct);
        return response.Status == ToolCallStatus.PendingApproval
            ? TypedResults.Accepted($"/v1/sessions/{id}", response)
            : TypedResults.Ok(response);
    }

    // Whether the caller may read the session is settled before the result runs: a refusal is then a problem
    // response, and the 200 of the stream is committed only once the stream can start.
    private static async Task<ServerSentEventsResult<ToolCallEvent>> StreamEventsAsync(
        Guid id, CurrentUser user, SessionService sessions, SessionEvents events, HttpContext http, CancellationToken ct)
    {
        // Subscribe before reading history so that nothing between the two is lost.
        var subscription = events.Subscribe(id);
        try
        {
            var (_, calls) = await sessions.GetWithHistoryAsync(id, user, ct);
            return TypedResults.ServerSentEvents(StreamAsync(subscription, calls, http.Response, ct), eventType: "tool_call");
        }
        catch
        {
            subscription.Dispose();
            throw;
        }
    }

    private static async IAsyncEnumerable<ToolCallEvent> StreamAsync(
        SessionEvents.Subscription subscription, IReadOnlyList<ToolCall> calls, HttpResponse response,
        [EnumeratorCancellation] CancellationToken ct)
    {
        using (subscription)
        {
            // The headers go out now, not with the first change: a client of a session with no calls yet knows at once
            // that its stream is open (EventSource's open event) instead of waiting for headers.
            await response.StartAsync(ct);
            await response.Body.FlushAsync(ct);

            // A change is announced once per commit and delivered as the call then reads, so a notification that
            // arrives after the history (or after another notification) can repeat a status already sent: only a
            // call's new statuses go out.
            var sent = new Dictionary<Guid, string>();
            foreach (var call in calls)
            {
                var change = ToolCallEvent.Of(call);
                sent[change.Id] = change.Status;
                yield return change;
            }

            await foreach (var change in subscription.Reader.ReadAllAsync(ct))
            {
                if (sent.TryGetValue(change.Id, out var status) && status == change.Status)
                {
                    continue;
                }

                sent[change.Id] = change.Status;
                yield return change;
            }
        }
    }
}

/// <summary>The body of <c>POST /v1/sessions/{id}/tool-calls</c>.</summary>
internal sealed record ToolCallBody(string Tool, JsonElement? Arguments);

/// <summary>
/// A session as <c>GET /v1/sessions/{id}</c> shows it: its tool calls and its agent conversation (turns' messages, the
/// model's replies, tool results, summaries), oldest first; <see cref="MessagesNext"/> pages on when there are more.
/// </summary>
internal sealed record SessionDetailView(
    Guid Id, string Status, string Owner, DateTimeOffset CreatedAt, IReadOnlyList<ToolCallEvent> ToolCalls,
    IReadOnlyList<MessageView> Messages, string? MessagesNext);
