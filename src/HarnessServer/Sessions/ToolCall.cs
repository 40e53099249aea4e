using System.Text.Json;
using HarnessServer.Data;

namespace HarnessServer.Sessions;

/// <summary>The contract's statuses of one tool call, plus the internal ones an approved call passes through.</summary>
internal enum ToolCallStatus
{
    Rejected,
    Denied,
    PendingApproval,
    Approved,
    Running,
    Succeeded,
    Failed,
    Expired,
    Interrupted,
}

/// <summary>One proposed tool call and everything the pipeline decided and observed about it.</summary>
internal sealed class ToolCall : ITenantOwned
{
    public Guid Id { get; init; }
    public required string TenantId { get; set; }

    /// <summary>Null for a call made outside a session (an HTTP memory write held for approval).</summary>
    public Guid? SessionId { get; init; }
    public required string RequestedBy { get; init; }
    public required string RequestedByName { get; init; }
    public required string[] RequesterTeams { get; init; }
    public required string Tool { get; init; }

    /// <summary>The <see cref="Tools.ToolDefinition.Digest"/> of the definition the call was decided on (none if unknown).</summary>
    public string? ToolDigest { get; init; }
    public required JsonDocument Arguments { get; init; }
    public ToolCallStatus Status { get; set; }
    public JsonDocument? Decision { get; set; }
    public JsonDocument? Result { get; set; }
    public JsonDocument? Error { get; set; }
    public Guid? ApprovalId { get; set; }
    public long? AuditSeq { get; set; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? CompletedAt { get; set; }

    /// <summary>The fencing token of the execution lease the call runs under (Pipeline.CallLeases); null before it runs.</summary>
    public long? LeaseToken { get; set; }
}
