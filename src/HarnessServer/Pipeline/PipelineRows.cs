using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Approvals;
using HarnessServer.Audit;
using HarnessServer.Sessions;
using HarnessServer.Tools;
using Npgsql;
using NpgsqlTypes;

namespace HarnessServer.Pipeline;

/// <summary>
/// The pipeline's writes as plain commands that commit with their audit events, in the writer's round trip
/// (<see cref="Audit.AuditCommand"/>). Statuses are stored by name, as the EF mapping reads them.
/// </summary>
internal static class PipelineRows
{
    /// <summary>The call as the commit stage stores it: decided (or rejected), not yet run.</summary>
    public static AuditCommand InsertCall(ToolCallContext context, ToolCallStatus status, string arguments, string? decision, DateTimeOffset at) => new("""
        INSERT INTO tool_calls (id, tenant_id, session_id, requested_by, requested_by_name, requester_teams, tool, arguments,
                                status, decision, result, error, approval_id, audit_seq, created_at, completed_at, tool_digest)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12, NULL, $13, $14, $15)
        """,
        context.CallId, context.Caller.TenantId, Nullable(context.SessionId, NpgsqlDbType.Uuid), context.Caller.UserId, context.Caller.DisplayName,
        context.Caller.Teams.ToArray(), context.Request.Tool, Json(arguments), status.ToString(), Json(decision),
        Json(context.Error is null ? null : JsonSerializer.Serialize(context.Error, AuditViews.Json)),
        Nullable(context.ApprovalId, NpgsqlDbType.Uuid), at,
        Nullable(status is ToolCallStatus.Rejected or ToolCallStatus.Denied ? at : (DateTimeOffset?)null, NpgsqlDbType.TimestampTz),
        new NpgsqlParameter { Value = (object?)context.Tool?.Digest ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });

    public static AuditCommand InsertApproval(Approval approval) => new("""
        INSERT INTO approvals (id, tenant_id, tool_call_id, session_id, requested_by, requester_teams, tool, reason, status,
                               created_at, expires_at, preview, approvers, quorum, self_approval)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        """,
        approval.Id, approval.TenantId, approval.ToolCallId, Nullable(approval.SessionId, NpgsqlDbType.Uuid), approval.RequestedBy, approval.RequesterTeams,
        approval.Tool, approval.Reason, approval.Status.ToString(), approval.CreatedAt, approval.ExpiresAt, Json(approval.Preview?.RootElement.GetRawText()),
        approval.Approvers, approval.Quorum, approval.SelfApproval);

    public static AuditCommand CompleteCall(
        string tenant, Guid callId, ToolCallStatus status, JsonNode? result, ToolCallError? error, DateTimeOffset at) => new("""
        UPDATE tool_calls SET status = $3, result = $4, error = $5, completed_at = $6 WHERE tenant_id = $1 AND id = $2
        """,
        tenant, callId, status.ToString(), Json(result?.ToJsonString()),
        Json(error is null ? null : JsonSerializer.Serialize(error, AuditViews.Json)), at);

    /// <summary>The SQLSTATE of a leased call's finishing write that found nothing to finish (migration LeaseFence).</summary>
    public const string LeaseFenced = "HL001";

    /// <summary>
    /// The same for a call run under an execution lease: only while the call is still running under that lease's
    /// token, and giving the lease up in the same statement. A call that is not fails the statement with
    /// <see cref="LeaseFenced"/>, so the append it rides in (its executed event) fails alone and commits nothing.
    /// </summary>
    public static AuditCommand CompleteLeasedCall(
        string tenant, Guid callId, ToolCallStatus status, JsonNode? result, ToolCallError? error, DateTimeOffset at, Guid scope, long token) => new("""
        WITH done AS (
            UPDATE tool_calls SET status = $3, result = $4, error = $5, completed_at = $6
            WHERE tenant_id = $1 AND id = $2 AND status = 'Running' AND lease_token = $8
            RETURNING id),
        released AS (
            UPDATE call_leases SET call_id = NULL, expires_at = now()
            WHERE tenant_id = $1 AND scope_id = $7 AND token = $8 AND EXISTS (SELECT 1 FROM done)
            RETURNING token)
        SELECT harness_lease_fence(count(*)) FROM done
        """,
        tenant, callId, status.ToString(), Json(result?.ToJsonString()),
        Json(error is null ? null : JsonSerializer.Serialize(error, AuditViews.Json)), at, scope, token);

    private static NpgsqlParameter Json(string? text) =>
        new() { Value = (object?)text ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Jsonb };

    private static NpgsqlParameter Nullable<T>(T? value, NpgsqlDbType type) where T : struct =>
        new() { Value = value.HasValue ? value.Value : DBNull.Value, NpgsqlDbType = type };
}
