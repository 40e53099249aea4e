using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Sandbox;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Sessions;

/// <summary>Creates sessions with their workspaces, reads them for their owner (or an admin), pauses and resumes.</summary>
internal sealed class SessionService(HarnessDbContext db, AuditChain audit, WorkspaceRoot workspaces, TenantSandboxUsers sandboxUsers, TimeProvider time)
{
    public async Task<Session> CreateAsync(CurrentUser user, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var session = new Session
        {
            Id = Guid.CreateVersion7(),
            TenantId = user.TenantId,
            OwnerUserId = user.UserId,
            OwnerName = user.DisplayName,
            Status = SessionStatus.Active,
            CreatedAt = now,
            UpdatedAt = now,
        };
        workspaces.Create(session.TenantId, session.Id.ToString(), await sandboxUsers.OfAsync(session.TenantId, cancellationToken)).Dispose();
        await audit.AppendAsync(user.TenantId, async (unit, ct) =>
        {
            unit.Db.Sessions.Add(session);
            await unit.Db.SaveChangesAsync(ct);
            return (true, (IReadOnlyList<AuditEntry>)[new AuditEntry("session.created", Actor(user), session.Id)]);
        }, cancellationToken);
        return session;
    }

    public async Task<(Session Session, IReadOnlyList<ToolCall> Calls)> GetWithHistoryAsync(Guid id, CurrentUser user, CancellationToken cancellationToken)
    {
        var session = await FindVisibleAsync(id, user, cancellationToken);
        var calls = await db.ToolCalls.AsNoTracking()
            .Where(c => c.SessionId == id)
            .OrderBy(c => c.CreatedAt).ThenBy(c => c.Id)
            .ToListAsync(cancellationToken);
        return (session, calls);
    }

    public async Task<Microsoft.AspNetCore.Http.HttpResults.Ok<SessionView>> SetStatusAsync(
        Guid id, CurrentUser user, SessionStatus status, CancellationToken cancellationToken)
    {
        var session = await FindVisibleAsync(id, user, cancellationToken);
        var before = session.Status;
        await audit.AppendAsync(user.TenantId, async (unit, ct) =>
        {
            var changed = await unit.Db.Sessions
                .Where(s => s.Id == id)
                .ExecuteUpdateAsync(s => s.SetProperty(x => x.Status, status).SetProperty(x => x.UpdatedAt, time.GetUtcNow()), ct);
            return (changed, (IReadOnlyList<AuditEntry>)[new AuditEntry(
                status == SessionStatus.Paused ? "session.paused" : "session.resumed", Actor(user), id,
                Payload: new JsonObject { ["before"] = before.ToString().ToLowerInvariant(), ["after"] = status.ToString().ToLowerInvariant() })]);
        }, cancellationToken);
        session.Status = status;
        return TypedResults.Ok(SessionView.Of(session, []));
    }

    // Owners see their sessions and admins see their tenant's; to anyone else a session does not exist.
    private async Task<Session> FindVisibleAsync(Guid id, CurrentUser user, CancellationToken cancellationToken)
    {
        var session = await db.Sessions.AsNoTracking().FirstOrDefaultAsync(s => s.Id == id, cancellationToken);
        if (session is null || (session.OwnerUserId != user.UserId && !user.IsAdmin))
        {
            throw new HarnessError(ErrorKind.NotFound, "session_not_found", $"Session {id} does not exist.");
        }

        return session;
    }

    private static AuditActor Actor(CurrentUser user) => new(user.UserId, user.DisplayName);
}
