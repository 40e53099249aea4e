using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Sessions;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Approvals;

/// <summary>Lists approvals in an approver's scope and records their decisions (audited with the call's update).</summary>
internal sealed class ApprovalService(HarnessDbContext db, AuditChain audit, TimeProvider time, ApprovalSignal signal)
{
    public static ApprovalStatus? ParseStatus(string? status) => status switch
    {
        null or "" => null,
        // By name only: Enum.TryParse would also take any number ("99") as a status.
        _ when Enum.GetNames<ApprovalStatus>().FirstOrDefault(n => string.Equals(n, status, StringComparison.OrdinalIgnoreCase)) is { } name
            => Enum.Parse<ApprovalStatus>(name),
        _ => throw new HarnessError(ErrorKind.Invalid, "invalid_status",
            $"Unknown approval status '{status}'; use pending, approved, rejected or expired."),
    };

    public async Task<IReadOnlyList<ApprovalView>> ListAsync(CurrentUser user, ApprovalStatus? status, CancellationToken cancellationToken)
    {
        var query = db.Approvals.AsNoTracking().Where(a => a.RequestedBy != user.UserId || user.IsAdmin);
        if (status is { } s)
        {
            query = query.Where(a => a.Status == s);
        }

        if (!user.IsAdmin)
        {
            var teams = user.Teams.ToArray();
            query = query.Where(a => a.RequesterTeams.Any(t => teams.Contains(t)));
        }

        var approvals = await query
            .Join(db.ToolCalls.AsNoTracking(), a => a.ToolCallId, c => c.Id, (a, c) => new { Approval = a, c.Arguments })
            .OrderBy(x => x.Approval.CreatedAt).Take(500).ToListAsync(cancellationToken);
        return approvals.Select(x => ApprovalView.Of(x.Approval, x.Arguments)).ToList();
    }

    public async Task<ApprovalView> DecideAsync(Guid id, CurrentUser user, ApprovalDecisionBody body, CancellationToken cancellationToken)
    {
        var found = await db.Approvals.AsNoTracking().Where(a => a.Id == id)
            .Join(db.ToolCalls.AsNoTracking(), a => a.ToolCallId, c => c.Id, (a, c) => new { Approval = a, c.Arguments })
            .FirstOrDefaultAsync(cancellationToken);
        // Outside the approver's scope an approval does not exist; admins' scope is the tenant.
        if (found is not { Approval: var approval, Arguments: var arguments } || (!user.IsAdmin && !approval.RequesterTeams.Intersect(user.Teams).Any()))
        {
            throw new HarnessError(ErrorKind.NotFound, "approval_not_found", $"Approval {id} does not exist.");
        }

        if (approval.RequestedBy == user.UserId)
        {
            throw new HarnessError(ErrorKind.Forbidden, "own_call",
                "The requester of a call cannot decide its approval; another approver must.");
        }

        var now = time.GetUtcNow();
        if (approval.Status == ApprovalStatus.Pending && approval.ExpiresAt <= now)
        {
            throw new HarnessError(ErrorKind.Conflict, "approval_expired", $"Approval {id} expired at {approval.ExpiresAt:O}.");
        }

        var decided = body.Approve ? ApprovalStatus.Approved : ApprovalStatus.Rejected;
        await audit.AppendAsync(user.TenantId, async (unit, ct) =>
        {
            // Only a pending approval can be decided; a concurrent decision makes this update match nothing.
            var changed = await unit.Db.Approvals
                .Where(a => a.Id == id && a.Status == ApprovalStatus.Pending)
                .ExecuteUpdateAsync(a => a
                    .SetProperty(x => x.Status, decided)
                    .SetProperty(x => x.DecidedBy, user.UserId)
                    .SetProperty(x => x.DecidedByName, user.DisplayName)
                    .SetProperty(x => x.Comment, body.Comment)
                    .SetProperty(x => x.DecidedAt, now), ct);
            if (changed == 0)
            {
                throw new HarnessError(ErrorKind.Conflict, "approval_decided", $"Approval {id} was already decided.");
            }

            if (!body.Approve)
            {
                await unit.Db.ToolCalls.Where(c => c.Id == approval.ToolCallId)
                    .ExecuteUpdateAsync(c => c.SetProperty(x => x.Status, ToolCallStatus.Denied).SetProperty(x => x.CompletedAt, now), ct);
            }
            else
            {
                await unit.Db.ToolCalls.Where(c => c.Id == approval.ToolCallId)
                    .ExecuteUpdateAsync(c => c.SetProperty(x => x.Status, ToolCallStatus.Approved), ct);
            }

            SessionEvents.CallChanged(unit, approval.TenantId, approval.SessionId, approval.ToolCallId);
            return (true, (IReadOnlyList<AuditEntry>)[new AuditEntry("tool_call.approval_decided",
                new AuditActor(user.UserId, user.DisplayName), approval.SessionId, approval.Tool,
                Decision: new JsonObject { ["effect"] = body.Approve ? "allow" : "deny", ["level"] = "approval", ["reason"] = body.Comment },
                Payload: new JsonObject
                {
                    ["approvalId"] = id.ToString(),
                    ["callId"] = approval.ToolCallId.ToString(),
                    ["requestedBy"] = approval.RequestedBy,
                    ["approver"] = user.UserId,
                    ["approved"] = body.Approve,
                    ["comment"] = body.Comment,
                })]);
        }, cancellationToken);

        if (body.Approve)
        {
            signal.Raise();
        }

        approval.Status = decided;
        approval.DecidedBy = user.UserId;
        approval.Comment = body.Comment;
        approval.DecidedAt = now;
        return ApprovalView.Of(approval, arguments);
    }
}
