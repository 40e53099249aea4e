using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Sessions;
using HarnessServer.Webhooks;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Approvals;

/// <summary>Lists approvals in an approver's scope and records their decisions (audited with the call's update).</summary>
internal sealed class ApprovalService(HarnessDbContext db, AuditChain audit, TimeProvider time, ApprovalSignal signal)
{
    /// <summary>The longest comment a vote keeps (the column's length).</summary>
    public const int MaxComment = 4000;

    public static ApprovalStatus? ParseStatus(string? status) => status switch
    {
        null or "" => null,
        // By name only: Enum.TryParse would also take any number ("99") as a status.
        _ when Enum.GetNames<ApprovalStatus>().FirstOrDefault(n => string.Equals(n, status, StringComparison.OrdinalIgnoreCase)) is { } name
            => Enum.Parse<ApprovalStatus>(name),
        _ => throw new HarnessError(ErrorKind.Invalid, "invalid_status",
            $"Unknown approval status '{status}'; use pending, approved, rejected or expired."),
    };

    /// <summary>
    /// Whether the rule that asked names <paramref name="user"/> as an approver: with no named approvers (the default),
    /// approvers of a team of the requester and admins; otherwise members of a named team and holders of a named role.
    /// Whether the requester may decide is <see cref="Approval.SelfApproval"/>, checked apart.
    /// </summary>
    public static bool Names(Approval approval, CurrentUser user) =>
        approval.Approvers.Length == 0
            ? user.IsAdmin || (user.IsApprover && approval.RequesterTeams.Intersect(user.Teams).Any())
            : approval.Approvers.Intersect(Entries(user), StringComparer.Ordinal).Any();

    private static HarnessError NotAnApprover(Guid id) => new(ErrorKind.Forbidden, "not_an_approver",
        $"You may not decide approval {id}: approvals are decided by approvers (role harness.approver) of the requester's teams, admins, or whom the asking rule names.");

    // The routing entries a user answers to: team:<each team>, role:<each role>.
    private static string[] Entries(CurrentUser user) =>
        [.. user.Teams.Select(t => $"team:{t}"), .. user.Roles.Select(r => $"role:{r}")];

    /// <summary>
    /// Approvals by status: with <paramref name="decidableOnly"/> false (<c>GET /v1/approvals</c>, approvers and admins)
    /// admins see the whole tenant and approvers what they may decide; with it true (<c>GET /v1/me/approvals</c>, any
    /// user) exactly the approvals the caller may vote on, admins included.
    /// </summary>
    public async Task<IReadOnlyList<ApprovalView>> ListAsync(CurrentUser user, ApprovalStatus? status, bool decidableOnly, CancellationToken cancellationToken)
    {
        var query = db.Approvals.AsNoTracking();
        if (status is { } s)
        {
            query = query.Where(a => a.Status == s);
        }

        // What a caller may decide: their own call only where its rule allows self approval; others' calls whose rule
        // names them, or, by default (no named approvers), their team's calls when they are approvers, any when admins.
        if (decidableOnly || !user.IsAdmin)
        {
            var uid = user.UserId;
            var teams = user.Teams.ToArray();
            var entries = Entries(user);
            var approver = user.IsApprover;
            var admin = user.IsAdmin;
            query = query.Where(a => a.RequestedBy == uid
                ? a.SelfApproval
                : a.Approvers.Length == 0
                    ? admin || (approver && a.RequesterTeams.Any(t => teams.Contains(t)))
                    : a.Approvers.Any(e => entries.Contains(e)));
        }

        var approvals = await query
            .Join(db.ToolCalls.AsNoTracking(), a => a.ToolCallId, c => c.Id, (a, c) => new { Approval = a, c.Arguments })
            .OrderBy(x => x.Approval.CreatedAt).Take(500).ToListAsync(cancellationToken);
        var ids = approvals.Select(x => x.Approval.Id).ToArray();
        var votes = (await db.ApprovalVotes.AsNoTracking().Where(v => ids.Contains(v.ApprovalId)).OrderBy(v => v.At).ToListAsync(cancellationToken))
            .ToLookup(v => v.ApprovalId);
        return approvals.Select(x => ApprovalView.Of(x.Approval, x.Arguments, votes[x.Approval.Id])).ToList();
    }

    /// <summary>
    /// Records one approver's vote. Each approver counts once (a second vote by the same person is <c>409
    /// already_voted</c>); the call is approved when the rule's quorum of distinct approvers approved, rejected on the
    /// first rejection; until then the approval stays pending. Every vote is audited: <c>tool_call.approval_voted</c>
    /// for a vote that does not settle it, <c>tool_call.approval_decided</c> for the one that does.
    /// </summary>
    public async Task<ApprovalView> DecideAsync(Guid id, CurrentUser user, ApprovalDecisionBody body, CancellationToken cancellationToken)
    {
        if (body.Comment is { Length: > MaxComment })
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_comment", $"A comment is at most {MaxComment} characters; this one has {body.Comment.Length}.");
        }

        var found = await db.Approvals.AsNoTracking().Where(a => a.Id == id)
            .Join(db.ToolCalls.AsNoTracking(), a => a.ToolCallId, c => c.Id, (a, c) => new { Approval = a, c.Arguments })
            .FirstOrDefaultAsync(cancellationToken);
        // Approvers and admins are the callers the contract gives this route; for them an approval outside their scope
        // does not exist (404), as before rules could route. Anyone else reaches it only where the rule names them (a
        // team entry) or lets them approve their own call; otherwise they are refused as the route always refused them
        // (403), existing or not, so a plain user learns nothing about approvals they cannot decide.
        var covered = user.IsAdmin || user.IsApprover;
        if (found is not { Approval: var approval, Arguments: var arguments })
        {
            throw covered
                ? new HarnessError(ErrorKind.NotFound, "approval_not_found", $"Approval {id} does not exist.")
                : NotAnApprover(id);
        }

        if (approval.RequestedBy == user.UserId)
        {
            if (!approval.SelfApproval)
            {
                throw new HarnessError(ErrorKind.Forbidden, "own_call",
                    "The requester of a call cannot decide its approval; another approver must.");
            }
        }
        else if (!Names(approval, user))
        {
            // An admin, or an approver of the requester's team, saw this approval before the rule routed it elsewhere.
            var sawIt = user.IsAdmin || (user.IsApprover && approval.RequesterTeams.Intersect(user.Teams).Any());
            if (covered && !sawIt)
            {
                throw new HarnessError(ErrorKind.NotFound, "approval_not_found", $"Approval {id} does not exist.");
            }

            throw approval.Approvers.Length == 0 || !covered
                ? NotAnApprover(id)
                : new HarnessError(ErrorKind.Forbidden, "not_an_approver",
                    $"Approval {id} is decided only by {string.Join(", ", approval.Approvers)}; you are none of them.");
        }

        var now = time.GetUtcNow();
        if (approval.Status == ApprovalStatus.Pending && approval.ExpiresAt <= now)
        {
            throw new HarnessError(ErrorKind.Conflict, "approval_expired", $"Approval {id} expired at {approval.ExpiresAt:O}.");
        }

        var receipt = await audit.AppendAsync(user.TenantId, async (unit, ct) =>
        {
            // Votes on one approval are counted one at a time: the row lock holds a concurrent vote until this commits.
            await unit.Db.Database.ExecuteSqlAsync($"SELECT 1 FROM approvals WHERE id = {id} AND tenant_id = {user.TenantId} FOR UPDATE", ct);
            var current = await unit.Db.Approvals.AsNoTracking().Where(a => a.Id == id).Select(a => a.Status).FirstAsync(ct);
            if (current != ApprovalStatus.Pending)
            {
                throw new HarnessError(ErrorKind.Conflict, "approval_decided", $"Approval {id} was already decided.");
            }

            // Checked again under the lock: a vote that waited for another one must not land after the expiry.
            if (approval.ExpiresAt <= time.GetUtcNow())
            {
                throw new HarnessError(ErrorKind.Conflict, "approval_expired", $"Approval {id} expired at {approval.ExpiresAt:O}.");
            }

            var votes = await unit.Db.ApprovalVotes.AsNoTracking().Where(v => v.ApprovalId == id).OrderBy(v => v.At).ToListAsync(ct);
            if (votes.Any(v => v.Approver == user.UserId))
            {
                throw new HarnessError(ErrorKind.Conflict, "already_voted",
                    $"You already approved {id}; each approver counts once, and it needs {approval.Quorum} distinct approvers.");
            }

            var vote = new ApprovalVote
            {
                ApprovalId = id,
                TenantId = approval.TenantId,
                Approver = user.UserId,
                ApproverName = user.DisplayName,
                Approve = body.Approve,
                Comment = body.Comment,
                At = now,
            };
            unit.Db.ApprovalVotes.Add(vote);
            await unit.Db.SaveChangesAsync(ct);
            votes.Add(vote);

            var approving = votes.Count(v => v.Approve);
            var settled = !body.Approve ? ApprovalStatus.Rejected : approving >= approval.Quorum ? ApprovalStatus.Approved : ApprovalStatus.Pending;
            var payload = new JsonObject
            {
                ["approvalId"] = id.ToString(),
                ["callId"] = approval.ToolCallId.ToString(),
                ["requestedBy"] = approval.RequestedBy,
                ["approver"] = user.UserId,
                ["approved"] = body.Approve,
                ["comment"] = body.Comment,
            };
            if (approval.Quorum > 1 || approval.Approvers.Length > 0 || approval.SelfApproval)
            {
                payload["quorum"] = approval.Quorum;
                payload["approvals"] = new JsonArray([.. votes.Where(v => v.Approve).Select(v => (JsonNode?)JsonValue.Create(v.Approver))]);
                // Whether the requester's own vote is among those that count (only possible under self: allow).
                payload["self"] = votes.Any(v => v.Approve && v.Approver == approval.RequestedBy);
            }

            if (settled == ApprovalStatus.Pending)
            {
                return ((Settled: settled, Votes: votes), (IReadOnlyList<AuditEntry>)[new AuditEntry("tool_call.approval_voted",
                    new AuditActor(user.UserId, user.DisplayName), approval.SessionId, approval.Tool, Payload: payload)]);
            }

            await unit.Db.Approvals
                .Where(a => a.Id == id && a.Status == ApprovalStatus.Pending)
                .ExecuteUpdateAsync(a => a
                    .SetProperty(x => x.Status, settled)
                    .SetProperty(x => x.DecidedBy, user.UserId)
                    .SetProperty(x => x.DecidedByName, user.DisplayName)
                    .SetProperty(x => x.Comment, body.Comment)
                    .SetProperty(x => x.DecidedAt, now), ct);
            if (body.Approve)
            {
                await unit.Db.ToolCalls.Where(c => c.Id == approval.ToolCallId)
                    .ExecuteUpdateAsync(c => c.SetProperty(x => x.Status, ToolCallStatus.Approved), ct);
            }
            else
            {
                await unit.Db.ToolCalls.Where(c => c.Id == approval.ToolCallId)
                    .ExecuteUpdateAsync(c => c.SetProperty(x => x.Status, ToolCallStatus.Denied).SetProperty(x => x.CompletedAt, now), ct);
            }

            SessionEvents.CallChanged(unit, approval.TenantId, approval.SessionId, approval.ToolCallId);
            await ApprovalWebhook.EnqueueAsync(unit, WebhookOutbox.Decided, Decided(approval, settled, user, body.Comment, now), arguments.RootElement,
                votes.Where(v => v.Approve).Select(v => v.Approver), now, ct);
            return ((Settled: settled, Votes: votes), (IReadOnlyList<AuditEntry>)[new AuditEntry("tool_call.approval_decided",
                new AuditActor(user.UserId, user.DisplayName), approval.SessionId, approval.Tool,
                Decision: new JsonObject { ["effect"] = body.Approve ? "allow" : "deny", ["level"] = "approval", ["reason"] = body.Comment },
                Payload: payload)]);
        }, cancellationToken);
        var (decided, votes) = receipt.Result;

        if (decided == ApprovalStatus.Approved)
        {
            signal.Raise();
        }

        return ApprovalView.Of(approval, arguments, votes);
    }

    // The approval as this vote left it, for the answer and the webhook (the row itself is updated in SQL).
    private static Approval Decided(Approval approval, ApprovalStatus status, CurrentUser user, string? comment, DateTimeOffset at)
    {
        approval.Status = status;
        approval.DecidedBy = user.UserId;
        approval.DecidedByName = user.DisplayName;
        approval.Comment = comment;
        approval.DecidedAt = at;
        return approval;
    }
}
