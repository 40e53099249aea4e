using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Sessions;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace HarnessServer.Pipeline;

/// <summary>
/// At start, marks as <c>interrupted</c> every call left <c>running</c> by a process that died, and every approved call
/// whose claim (<see cref="Pipeline.ApprovedCallExecutor"/>) no process went on to run: a process runs a call only
/// while it holds its session's advisory lock (<see cref="SessionGate"/>; the call's own for a call outside a session),
/// so a lock nobody holds means nobody is running it. Such a call is recorded, with an audit event, and never run
/// again; a process that claimed it and takes the lock afterwards finds it interrupted and does not run it.
/// </summary>
internal sealed class InterruptedCallRecovery(
    DatabaseSources sources,
    AuditChain audit,
    TimeProvider time,
    ILogger<InterruptedCallRecovery> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var running = new List<(string Tenant, Guid? Session, Guid Call, string Tool)>();
        await using (var connection = await sources.Application.OpenConnectionAsync(cancellationToken))
        await using (var find = new NpgsqlCommand("""
            SELECT c.tenant_id, c.session_id, c.id, c.tool FROM tool_calls c
            WHERE c.status = 'Running'
               OR (c.status = 'Approved' AND EXISTS (SELECT 1 FROM approvals a WHERE a.tool_call_id = c.id AND a.executed_at IS NOT NULL))
            """, connection))
        await using (var reader = await find.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                running.Add((reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetGuid(1), reader.GetGuid(2), reader.GetString(3)));
            }
        }

        foreach (var call in running)
        {
            await RecoverAsync(call, cancellationToken);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private async Task RecoverAsync((string Tenant, Guid? Session, Guid Call, string Tool) call, CancellationToken cancellationToken)
    {
        var lockKey = SessionGate.LockKey(call.Session ?? call.Call);
        await using var probe = await sources.Application.OpenConnectionAsync(cancellationToken);
        await using var tryLock = new NpgsqlCommand("SELECT pg_try_advisory_lock($1)", probe) { Parameters = { new() { Value = lockKey } } };
        if (await tryLock.ExecuteScalarAsync(cancellationToken) is not true)
        {
            return; // another process is running this call right now
        }

        try
        {
            await audit.AppendAsync(call.Tenant, async (unit, ct) =>
            {
                var changed = await unit.Db.ToolCalls
                    .Where(c => c.Id == call.Call && (c.Status == ToolCallStatus.Running || c.Status == ToolCallStatus.Approved))
                    .ExecuteUpdateAsync(c => c.SetProperty(x => x.Status, ToolCallStatus.Interrupted).SetProperty(x => x.CompletedAt, time.GetUtcNow()), ct);
                SessionEvents.CallChanged(unit, call.Tenant, call.Session, call.Call);
                return (changed, (IReadOnlyList<AuditEntry>)[new AuditEntry("tool_call.interrupted", new AuditActor("harness", "HarnessServer"),
                    call.Session, call.Tool, Payload: new JsonObject { ["callId"] = call.Call.ToString(), ["reason"] = "the server stopped while the call was running" })]);
            }, cancellationToken);
            logger.LogWarning("Call {Call} of {Tenant} was running when its server stopped; recorded as interrupted", call.Call, call.Tenant);
        }
        finally
        {
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock($1)", probe) { Parameters = { new() { Value = lockKey } } };
            await unlock.ExecuteNonQueryAsync(cancellationToken);
        }
    }
}
