using System.Text.Json;

namespace HarnessServer.Sessions;

/// <summary>A session as the API shows it.</summary>
internal sealed record SessionView(Guid Id, string Status, string Owner, DateTimeOffset CreatedAt, IReadOnlyList<ToolCallEvent> ToolCalls)
{
    public static SessionView Of(Session session, IReadOnlyList<ToolCall> calls) => new(
        session.Id,
        JsonNamingPolicy.SnakeCaseLower.ConvertName(session.Status.ToString()),
        session.OwnerUserId,
        session.CreatedAt,
        calls.Select(ToolCallEvent.Of).ToList());
}

/// <summary>One tool call's state, in the session history and on the event stream.</summary>
internal sealed record ToolCallEvent(Guid Id, string Tool, string Status, JsonElement? Arguments, JsonElement? Decision, JsonElement? Result, JsonElement? Error, Guid? ApprovalId, DateTimeOffset CreatedAt, DateTimeOffset? CompletedAt)
{
    public static ToolCallEvent Of(ToolCall call) => new(
        call.Id, call.Tool, AuditViews.Status(call.Status),
        call.Arguments.RootElement, call.Decision?.RootElement, call.Result?.RootElement, call.Error?.RootElement,
        call.ApprovalId, call.CreatedAt, call.CompletedAt);
}
