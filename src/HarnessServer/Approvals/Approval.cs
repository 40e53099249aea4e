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
