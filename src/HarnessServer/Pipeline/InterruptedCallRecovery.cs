using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Sessions;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Pipeline;

/// <summary>
/// At start, marks as <c>interrupted</c> every call left <c>running</c> by a process that died, and every approved call
/// whose claim (<see cref="Pipeline.ApprovedCallExecutor"/>) no process went on to run: a process runs a call only
/// while it holds its session's advisory lock (<see cref="SessionGate"/>; the call's own for a call outside a session),
/// so a lock nobody holds means nobody is running it. Such a call is recorded, with an audit event, and never run
/// again; a process that claimed it and takes the lock afterwards finds it interrupted and does not run it.
/// Then, every <see cref="RecoveryOptions.SweepInterval"/>, it does the same for <c>running</c> calls only (a call is
/// made <c>running</c> only under its lock, so an unlocked one is not between two steps of a live process; an approved
/// call between its claim and its lock is, so those wait for a start): a call whose process lives on but whose
/// executed event could not be written (the audit was down) is found without a restart.
/// </summary>
internal sealed class InterruptedCallRecovery(
    DatabaseSources sources,
    AuditChain audit,
    IOptions<RecoveryOptions> options,
    TimeProvider time,
    ILogger<InterruptedCallRecovery> logger) : IHostedService, IAsyncDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private Task? _sweeps;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await SweepAsync(includeClaimed: true, cancellationToken);
        _sweeps = Task.Run(() => SweepPeriodicallyAsync(_stopping.Token), CancellationToken.None);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        if (_sweeps is not null)
        {
            await _sweeps.WaitAsync(cancellationToken);
        }
    }

    public ValueTask DisposeAsync()
    {
        _stopping.Dispose();
        return ValueTask.CompletedTask;
    }

    private async Task SweepPeriodicallyAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(options.Value.SweepInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping))
            {
                try
                {
                    await SweepAsync(includeClaimed: false, stopping);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogError(e, "The sweep for interrupted calls failed; it runs again in {Interval}", options.Value.SweepInterval);
                }
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    private async Task SweepAsync(bool includeClaimed, CancellationToken cancellationToken)
    {
        var running = new List<(string Tenant, Guid? Session, Guid Call, string Tool)>();
        await using (var connection = await sources.Application.OpenConnectionAsync(cancellationToken))
        await using (var find = new NpgsqlCommand("""
            SELECT c.tenant_id, c.session_id, c.id, c.tool FROM tool_calls c
            WHERE c.status = 'Running'
               OR ($1 AND c.status = 'Approved' AND EXISTS (SELECT 1 FROM approvals a WHERE a.tool_call_id = c.id AND a.executed_at IS NOT NULL))
            """, connection) { Parameters = { new() { Value = includeClaimed } } })
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
            var receipt = await audit.AppendAsync(call.Tenant, async (unit, ct) =>
            {
                var changed = await unit.Db.ToolCalls
                    .Where(c => c.Id == call.Call && (c.Status == ToolCallStatus.Running || c.Status == ToolCallStatus.Approved))
                    .ExecuteUpdateAsync(c => c.SetProperty(x => x.Status, ToolCallStatus.Interrupted).SetProperty(x => x.CompletedAt, time.GetUtcNow()), ct);
                // Read as running before the lock was taken, it may have finished since: then nothing is recorded.
                if (changed == 0)
                {
                    return (changed, (IReadOnlyList<AuditEntry>)[]);
                }

                SessionEvents.CallChanged(unit, call.Tenant, call.Session, call.Call);
                return (changed, (IReadOnlyList<AuditEntry>)[new AuditEntry("tool_call.interrupted", new AuditActor("harness", "HarnessServer"),
                    call.Session, call.Tool, Payload: new JsonObject { ["callId"] = call.Call.ToString(), ["reason"] = "the server stopped, or could not record the call, while it was running" })]);
            }, cancellationToken);
            if (receipt.Result > 0)
            {
                logger.LogWarning("Call {Call} of {Tenant} was running with no process holding it; recorded as interrupted", call.Call, call.Tenant);
            }
        }
        finally
        {
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock($1)", probe) { Parameters = { new() { Value = lockKey } } };
            await unlock.ExecuteNonQueryAsync(cancellationToken);
        }
    }
}
