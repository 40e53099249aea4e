using System.Text.Json;

namespace HarnessServer.Approvals;

/// <summary>The body of <c>POST /v1/approvals/{id}/decision</c>.</summary>
internal sealed record ApprovalDecisionBody(bool Approve, string? Comment);

/// <summary>
/// An approval as approvers see it, with the held call's arguments and a preview of what it will do (the diff, the
/// decided commands, the host): what they approve, not only which tool.
/// </summary>
internal sealed record ApprovalView(
    Guid Id, Guid ToolCallId, Guid? SessionId, string Tool, JsonElement Arguments, string RequestedBy, string Reason, string Status,
    string? DecidedBy, string? Comment, DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt, DateTimeOffset? DecidedAt, JsonElement? Preview,
    IReadOnlyList<string> Approvers, int Quorum, string Self, IReadOnlyList<ApprovalVoteView> Approvals)
{
    public static ApprovalView Of(Approval a, JsonDocument arguments, IEnumerable<ApprovalVote> votes) => new(
        a.Id, a.ToolCallId, a.SessionId, a.Tool, arguments.RootElement.Clone(), a.RequestedBy, a.Reason, a.Status.ToString().ToLowerInvariant(),
        a.DecidedBy, a.Comment, a.CreatedAt, a.ExpiresAt, a.DecidedAt, a.Preview?.RootElement.Clone(),
        a.Approvers, a.Quorum, a.SelfApproval ? "allow" : "deny",
        [.. votes.Where(v => v.Approve).Select(v => new ApprovalVoteView(v.Approver, v.ApproverName, v.Comment, v.At))]);
}

/// <summary>One approving vote recorded so far: who, and when.</summary>
internal sealed record ApprovalVoteView(string Approver, string Name, string? Comment, DateTimeOffset At);
