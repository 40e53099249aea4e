using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Sessions;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Pipeline;

/// <summary>
/// At start, marks as <c>interrupted</c> every call left <c>running</c> by a process that died, and every approved call
/// whose claim (<see cref="Pipeline.ApprovedCallExecutor"/>) no process went on to run: a process runs a call only
/// while it holds its session's advisory lock (<see cref="SessionGate"/>; the call's own for a call outside a session)
/// and, once it executes, the session's execution lease (<see cref="CallLeases"/>), so a lock nobody holds and no
/// lease in force for the call mean nobody is running it. Such a call is recorded, with an audit event, and never run
/// again; a process that claimed it and takes the lock afterwards finds it interrupted and does not run it, and a
/// holder whose lease ran out finds its finishing write refused by the fencing token.
/// Then, every <see cref="RecoveryOptions.SweepInterval"/>, it does the same for <c>running</c> calls only (a call is
/// made <c>running</c> only under its lock, so an unlocked one is not between two steps of a live process; an approved
/// call between its claim and its lock is, so those wait for a start): a call whose replica was killed is found once
/// its lease has run out, and one whose executed event could not be written (the audit was down) without a restart.
/// The lease, not the lock, is what tells a live holder apart after a primary switch, which forgets every advisory lock.
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
    private int _disposed;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await SweepAsync(includeClaimed: true, cancellationToken);
        _sweeps = Task.Run(() => SweepPeriodicallyAsync(_stopping.Token), CancellationToken.None);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // A host disposed before it was stopped (a test factory's Dispose and DisposeAsync both) stops nothing more.
        if (Volatile.Read(ref _disposed) == 1)
        {
            return;
        }

        await _stopping.CancelAsync();
        if (_sweeps is not null)
        {
            await _sweeps.WaitAsync(cancellationToken);
        }
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return ValueTask.CompletedTask;
        }

        _stopping.Cancel();
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
        var running = new List<(string Tenant, Guid? Session, Guid Call, string Tool, long? Token)>();
        await using (var connection = await sources.Application.OpenConnectionAsync(cancellationToken))
        await using (var find = new NpgsqlCommand($"""
            SELECT c.tenant_id, c.session_id, c.id, c.tool, c.lease_token FROM tool_calls c
            WHERE (c.status = 'Running'
               OR ($1 AND c.status = 'Approved' AND EXISTS (SELECT 1 FROM approvals a WHERE a.tenant_id = c.tenant_id AND a.tool_call_id = c.id AND a.executed_at IS NOT NULL)))
              AND {NoLeaseInForce}
            """, connection) { Parameters = { new() { Value = includeClaimed } } })
        await using (var reader = await find.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                running.Add((reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetGuid(1), reader.GetGuid(2), reader.GetString(3),
                    reader.IsDBNull(4) ? null : reader.GetInt64(4)));
            }
        }

        foreach (var call in running)
        {
            await RecoverAsync(call, cancellationToken);
        }
    }

    // The call holds no lease that is still in force (in the database's clock, as the holder renews it).
    private const string NoLeaseInForce = """
        NOT EXISTS (SELECT 1 FROM call_leases l
                    WHERE l.tenant_id = c.tenant_id AND l.scope_id = COALESCE(c.session_id, c.id) AND l.call_id = c.id
                      AND l.token = c.lease_token AND l.expires_at >= now())
        """;

    private async Task RecoverAsync((string Tenant, Guid? Session, Guid Call, string Tool, long? Token) call, CancellationToken cancellationToken)
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
                // Only under the token it was read with and while no lease is in force for it, in one statement: a
                // holder that renewed meanwhile keeps its call, and of two sweepers only one records it.
                await using var interrupt = new NpgsqlCommand($"""
                    UPDATE tool_calls c SET status = 'Interrupted', completed_at = $3
                    WHERE c.tenant_id = $1 AND c.id = $2 AND c.status IN ('Running', 'Approved')
                      AND c.lease_token IS NOT DISTINCT FROM $4 AND {NoLeaseInForce}
                    """, unit.Connection, unit.Transaction)
                {
                    Parameters =
                    {
                        new() { Value = call.Tenant },
                        new() { Value = call.Call },
                        new() { Value = time.GetUtcNow() },
                        new() { Value = (object?)call.Token ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint },
                    },
                };
                var changed = await interrupt.ExecuteNonQueryAsync(ct);
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
