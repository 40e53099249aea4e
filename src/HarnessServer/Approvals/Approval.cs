using HarnessServer.Data;

namespace HarnessServer.Approvals;

internal enum ApprovalStatus
{
    Pending,
    Approved,
    Rejected,
    Expired,
}

/// <summary>
/// A call held for a human. Approvers of a team of the requester (or admins) decide it; an approved call is claimed
/// and run once by <see cref="ApprovedCallExecutor"/>.
/// </summary>
internal sealed class Approval : ITenantOwned
{
    public Guid Id { get; init; }
    public required string TenantId { get; set; }
    public Guid ToolCallId { get; init; }
    /// <summary>Null when the held call was made outside a session (an HTTP memory write).</summary>
    public Guid? SessionId { get; init; }
    public required string RequestedBy { get; init; }
    public required string[] RequesterTeams { get; init; }
    public required string Tool { get; init; }
    public required string Reason { get; init; }

    /// <summary>
    /// What the call will do, made when it was asked (<see cref="ApprovalPreview"/>): a file write's diff, a shell line's
    /// decided commands, a fetch's host, a memory write's text. Large parts are truncated; the arguments are whole.
    /// </summary>
    public System.Text.Json.JsonDocument? Preview { get; init; }
    public ApprovalStatus Status { get; set; }

    /// <summary>
    /// Who may approve, from the rule that asked: <c>team:&lt;name&gt;</c> and <c>role:&lt;name&gt;</c> entries; empty means
    /// approvers of <see cref="RequesterTeams"/> and admins (the default, as before rules could route).
    /// </summary>
    public string[] Approvers { get; init; } = [];

    /// <summary>How many distinct approvers must approve before the call runs (one rejection rejects it).</summary>
    public int Quorum { get; init; } = 1;

    /// <summary>Whether the requester may approve their own call (the rule's <c>self: allow</c>); otherwise four eyes.</summary>
    public bool SelfApproval { get; init; }
    public string? DecidedBy { get; set; }
    public string? DecidedByName { get; set; }
    public string? Comment { get; set; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset ExpiresAt { get; init; }
    public DateTimeOffset? DecidedAt { get; set; }

    /// <summary>Set when the executor has run the approved call; it is never run twice.</summary>
    public DateTimeOffset? ExecutedAt { get; set; }

    public uint Version { get; set; }
}

/// <summary>
/// One approver's vote on an approval: each approver counts once (the key is the approval and the approver), and the
/// approval is approved when its quorum of approving votes is reached, rejected on the first rejecting one.
/// </summary>
internal sealed class ApprovalVote : ITenantOwned
{
    public Guid ApprovalId { get; init; }
    public required string TenantId { get; set; }
    public required string Approver { get; init; }
    public required string ApproverName { get; init; }
    public bool Approve { get; init; }
    public string? Comment { get; init; }
    public DateTimeOffset At { get; init; }
}
