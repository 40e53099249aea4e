using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Pipeline;
using HarnessServer.Sessions;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Api;

/// <summary>
/// Memory requests the policy answers with <c>ask</c>: each becomes a <c>memory.save</c> or <c>memory.search</c> tool
/// call outside any session, which the pipeline decides again with the tenant's policy and, when it asks, stores
/// with a pending approval and its audit events. An approver decides it and the approval executor runs it once,
/// deciding it a third time and checking membership again; its requester follows it at <see cref="Location"/>.
/// </summary>
internal sealed class MemoryRequests(ToolCallPipeline pipeline, HarnessDbContext db)
{
    public static string Location(Guid id) => $"/v1/memory/requests/{id}";

    /// <summary>Runs the call through the pipeline; usually it comes back <c>pending_approval</c>.</summary>
    public Task<ToolCallResponse> SubmitAsync(CurrentUser user, string tool, JsonObject arguments, CancellationToken cancellationToken) =>
        pipeline.RunAsync(new ToolCallRequest(user, null, tool, JsonSerializer.SerializeToElement(arguments)), cancellationToken);

    /// <summary>
    /// One of the caller's requests (an admin's scope is the tenant). Another user's request, a session's call and
    /// another tenant's anything do not exist here (404).
    /// </summary>
    public async Task<MemoryRequestView> FindAsync(CurrentUser user, Guid id, CancellationToken cancellationToken)
    {
        var call = await db.ToolCalls.AsNoTracking()
            .FirstOrDefaultAsync(c => c.Id == id && c.SessionId == null && (c.RequestedBy == user.UserId || user.IsAdmin), cancellationToken);
        return call is null
            ? throw new HarnessError(ErrorKind.NotFound, "memory_request_not_found", $"Memory request {id} does not exist.")
            : MemoryRequestView.Of(call);
    }
}

/// <summary>
/// A held memory request and, once it ran, its result shaped like the tool's (<c>{ id, namespace }</c> for
/// <c>memory.save</c>). <see cref="Status"/> is a tool call's: <c>pending_approval</c>, <c>approved</c> (waiting for the
/// executor), <c>running</c>, <c>succeeded</c>, <c>failed</c>, <c>denied</c> (rejected by the approver, or by the policy
/// when it ran), <c>expired</c>, <c>interrupted</c>.
/// </summary>
internal sealed record MemoryRequestView(
    Guid Id, string Tool, string? Namespace, string Status, Guid? ApprovalId, string? Reason, JsonElement? Result, JsonElement? Error,
    string RequestedBy, DateTimeOffset CreatedAt, DateTimeOffset? CompletedAt)
{
    public static MemoryRequestView Of(ToolCall call) => new(
        call.Id,
        call.Tool,
        call.Arguments.RootElement.TryGetProperty("namespace", out var ns) && ns.ValueKind == JsonValueKind.String ? ns.GetString() : null,
        AuditViews.Status(call.Status),
        call.ApprovalId,
        call.Decision?.RootElement.TryGetProperty("reason", out var reason) == true && reason.ValueKind == JsonValueKind.String ? reason.GetString() : null,
        call.Result?.RootElement.Clone(),
        call.Error?.RootElement.Clone(),
        call.RequestedBy,
        call.CreatedAt,
        call.CompletedAt);
}
