using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Pipeline;
using HarnessServer.Sandbox;
using HarnessServer.Sessions;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Agents;

/// <summary>
/// Restores a session's workspace to one of its checkpoints, exactly, and marks the agent history from that point on
/// rolled back, in one audited unit: no turn may be running, and no call may be inside the workspace meanwhile.
/// </summary>
internal sealed class SessionRollback(
    HarnessDbContext db, TurnLock locks, SessionGate gate, WorkspaceCheckpoints checkpoints, TenantSandboxUsers sandboxUsers,
    AuditChain audit, TimeProvider time)
{
    /// <summary>Only the session's owner rolls it back; to anyone else the session does not exist.</summary>
    public async Task<RollbackView> RollbackAsync(CurrentUser user, Guid sessionId, Guid checkpointId, CancellationToken cancellationToken)
    {
        if (!await db.Sessions.AnyAsync(s => s.Id == sessionId && s.OwnerUserId == user.UserId, cancellationToken))
        {
            throw new HarnessError(ErrorKind.NotFound, "session_not_found", $"Session {sessionId} does not exist.");
        }

        var checkpoint = await db.WorkspaceCheckpoints.AsNoTracking().FirstOrDefaultAsync(c => c.Id == checkpointId && c.SessionId == sessionId, cancellationToken)
            ?? throw new HarnessError(ErrorKind.NotFound, "checkpoint_not_found", $"Checkpoint {checkpointId} does not exist in session {sessionId}.");

        // No turn may run while its workspace and history change under it, and no call may be inside the workspace.
        await using var turnLock = await locks.TryAcquireAsync(sessionId, cancellationToken)
            ?? throw new HarnessError(ErrorKind.Conflict, "turn_in_progress", $"Session {sessionId} has a running turn; roll back once it has finished.");
        if (await db.AgentTurns.AnyAsync(t => t.SessionId == sessionId && (t.Status == TurnStatus.Running || t.Status == TurnStatus.WaitingForApproval), cancellationToken))
        {
            throw new HarnessError(ErrorKind.Conflict, "turn_in_progress", $"Session {sessionId} has a turn that is still open; roll back once it has finished.");
        }

        await using var entered = await gate.EnterAsync(user.TenantId, sessionId, cancellationToken);
        checkpoints.Restore(user.TenantId, sessionId.ToString(), checkpoint.TreeHash, await sandboxUsers.OfAsync(user.TenantId, cancellationToken));
        var now = time.GetUtcNow();
        var rolledBack = await audit.AppendAsync(user.TenantId, async (unit, token) =>
        {
            // The checkpoint was taken just before its call; the history from then on no longer describes the workspace.
            var messages = await unit.Db.AgentMessages
                .Where(m => m.SessionId == sessionId && m.CreatedAt >= checkpoint.CreatedAt && !m.RolledBack)
                .ExecuteUpdateAsync(m => m.SetProperty(x => x.RolledBack, true), token);
            await unit.Db.WorkspaceCheckpoints.Where(c => c.Id == checkpoint.Id)
                .ExecuteUpdateAsync(c => c.SetProperty(x => x.RestoredAt, now), token);
            return (messages, (IReadOnlyList<AuditEntry>)[new AuditEntry("session.rolled_back", new AuditActor(user.UserId, user.DisplayName), sessionId,
                checkpoint.Tool, Payload: new JsonObject
                {
                    ["checkpointId"] = checkpoint.Id.ToString(),
                    ["treeHash"] = checkpoint.TreeHash,
                    ["callId"] = checkpoint.ToolCallId.ToString(),
                    ["messagesRolledBack"] = messages,
                })]);
        }, cancellationToken);
        return new RollbackView(checkpoint.Id, rolledBack.Result, rolledBack.LastSeq);
    }
}

/// <summary>The answer of <c>POST /v1/sessions/{id}/rollback</c>.</summary>
internal sealed record RollbackView(Guid Checkpoint, int MessagesRolledBack, long AuditSeq);
