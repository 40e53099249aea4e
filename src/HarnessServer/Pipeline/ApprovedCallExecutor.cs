using System.Text.Json.Nodes;
using HarnessServer.Approvals;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Identity;
using HarnessServer.Sessions;
using HarnessServer.Webhooks;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Pipeline;

/// <summary>
/// The durable worker behind approvals. It claims one approved, not yet executed approval at a time (one per tenant
/// in turn) with <c>FOR UPDATE SKIP LOCKED</c> and stamps it executed in the claiming transaction, before running it: so two server
/// processes never run the same call, and a call whose process died mid-run is never run again. The call itself stays
/// <c>approved</c> until the pipeline holds its lock and marks it running (<see cref="ToolCallPipeline.RunApprovedAsync"/>),
/// so recovery can never find it running without a lock while it is about to run. A call whose session
/// is paused is not claimed until the session is resumed: pause stops approved calls as it stops new ones. It also
/// expires approvals that waited too long. Decisions and resumes wake it through <see cref="ApprovalSignal"/>; otherwise it polls.
/// </summary>
internal sealed class ApprovedCallExecutor(
    DatabaseSources sources,
    IServiceScopeFactory scopes,
    TenantDbContextFactory contexts,
    AuditChain audit,
    TimeProvider time,
    IOptions<ApprovalOptions> options,
    ApprovalSignal signal,
    ILogger<ApprovedCallExecutor> logger) : BackgroundService
{

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await ExpireAsync(stoppingToken);
                // One call per tenant per round, the longest-waiting tenant first, until a round finds nothing.
                var ran = true;
                while (ran)
                {
                    ran = false;
                    foreach (var tenant in await TenantsWithApprovedCallsAsync(stoppingToken))
                    {
                        if (await ClaimAsync(tenant, stoppingToken) is not { } claim)
                        {
                            continue;
                        }

                        ran = true;
                        try
                        {
                            await RunAsync(claim, stoppingToken);
                        }
                        catch (Exception e) when (e is not OperationCanceledException)
                        {
                            // One bad call must not stop the worker (an exception out of ExecuteAsync stops the host).
                            // It was claimed, so it is never run again; InterruptedCallRecovery records it at next start.
                            logger.LogError(e, "Approved call {Call} of {Tenant} failed", claim.CallId, claim.Tenant);
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is NpgsqlException or AuditUnavailableException or InvalidOperationException)
            {
                logger.LogWarning(e, "Approved-call executor pass failed; retrying");
            }

            await signal.WaitAsync(options.Value.PollInterval, stoppingToken);
        }
    }

    // Approved calls not yet claimed, of sessions that are not paused: which tenants have them is a plain read over
    // every tenant; the claim then locks and writes within one tenant (a single-shard statement under Citus, see
    // docs/sharding.md), and every join is on tenant_id as well as the id.
    private const string Claimable = """
        a.status = 'Approved' AND a.executed_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.tenant_id = a.tenant_id AND s.id = a.session_id AND s.status = 'Paused')
        """;

    private async Task<List<string>> TenantsWithApprovedCallsAsync(CancellationToken cancellationToken)
    {
        var tenants = new List<string>();
        await using var connection = await sources.Application.OpenConnectionAsync(cancellationToken);
        await using var find = new NpgsqlCommand(
            $"SELECT a.tenant_id FROM approvals a WHERE {Claimable} GROUP BY a.tenant_id ORDER BY min(a.decided_at)", connection);
        await using var reader = await find.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            tenants.Add(reader.GetString(0));
        }

        return tenants;
    }

    private async Task<(string Tenant, Guid CallId)?> ClaimAsync(string tenant, CancellationToken cancellationToken)
    {
        await using var connection = await sources.Application.OpenConnectionAsync(cancellationToken);
        await using var claim = new NpgsqlCommand($"""
            WITH next AS (
                SELECT a.id FROM approvals a
                WHERE a.tenant_id = $1 AND {Claimable}
                ORDER BY a.decided_at LIMIT 1
                FOR UPDATE OF a SKIP LOCKED)
            UPDATE approvals a SET executed_at = now() FROM next WHERE a.tenant_id = $1 AND a.id = next.id
            RETURNING a.tool_call_id
            """, connection) { Parameters = { new() { Value = tenant } } };
        return await claim.ExecuteScalarAsync(cancellationToken) is Guid callId ? (tenant, callId) : null;
    }

    private async Task RunAsync((string Tenant, Guid CallId) claim, CancellationToken cancellationToken)
    {
        ToolCall call;
        CurrentUser requester;
        await using (var db = contexts.Create(claim.Tenant))
        {
            call = await db.ToolCalls.AsNoTracking().FirstAsync(c => c.Id == claim.CallId, cancellationToken);
            // The call runs as its requester, with the teams they had when they asked and still have: memberships are
            // refreshed from each of their tokens, so a team they have left since no longer counts for the policy or
            // for a team's memory.
            var current = await db.TeamMemberships.AsNoTracking().Where(m => m.UserId == call.RequestedBy).Select(m => m.TeamName).ToListAsync(cancellationToken);
            var teams = call.RequesterTeams.Intersect(current, StringComparer.Ordinal).ToArray();
            requester = new CurrentUser(call.TenantId, call.RequestedBy, call.RequestedByName, teams, []);
        }

        // The pipeline and its steps are scoped services: one scope per call, bound to the call's tenant by the pipeline.
        await using var scope = scopes.CreateAsyncScope();
        var pipeline = scope.ServiceProvider.GetRequiredService<ToolCallPipeline>();
        var request = new ToolCallRequest(requester, call.SessionId, call.Tool, call.Arguments.RootElement.Clone());
        var response = await pipeline.RunApprovedAsync(request, call, cancellationToken);
        logger.LogInformation("Approved call {Call} of {Tenant} finished {Status}", call.Id, call.TenantId, response.Status);
    }

    private async Task ExpireAsync(CancellationToken cancellationToken)
    {
        var tenants = new List<string>();
        await using (var connection = await sources.Application.OpenConnectionAsync(cancellationToken))
        await using (var find = new NpgsqlCommand(
            "SELECT DISTINCT tenant_id FROM approvals WHERE status = 'Pending' AND expires_at <= now()", connection))
        await using (var reader = await find.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                tenants.Add(reader.GetString(0));
            }
        }

        foreach (var tenant in tenants)
        {
            await audit.AppendAsync(tenant, async (unit, ct) =>
            {
                var now = time.GetUtcNow();
                var expired = await unit.Db.Approvals
                    .Where(a => a.Status == ApprovalStatus.Pending && a.ExpiresAt <= now)
                    .ToListAsync(ct);
                var entries = new List<AuditEntry>();
                foreach (var approval in expired)
                {
                    approval.Status = ApprovalStatus.Expired;
                    approval.DecidedAt = now;
                    await unit.Db.ToolCalls.Where(c => c.Id == approval.ToolCallId)
                        .ExecuteUpdateAsync(c => c.SetProperty(x => x.Status, ToolCallStatus.Expired).SetProperty(x => x.CompletedAt, now), ct);
                    SessionEvents.CallChanged(unit, tenant, approval.SessionId, approval.ToolCallId);
                    var arguments = await unit.Db.ToolCalls.Where(c => c.Id == approval.ToolCallId).Select(c => c.Arguments).FirstAsync(ct);
                    var voters = await unit.Db.ApprovalVotes.Where(v => v.ApprovalId == approval.Id && v.Approve).OrderBy(v => v.At).Select(v => v.Approver).ToListAsync(ct);
                    await ApprovalWebhook.EnqueueAsync(unit, WebhookOutbox.Decided, approval, arguments.RootElement, voters, now, ct);
                    entries.Add(new AuditEntry("tool_call.approval_expired", new AuditActor("harness", "HarnessServer"),
                        approval.SessionId, approval.Tool,
                        Payload: new JsonObject { ["approvalId"] = approval.Id.ToString(), ["callId"] = approval.ToolCallId.ToString(), ["requestedBy"] = approval.RequestedBy }));
                }

                await unit.Db.SaveChangesAsync(ct);
                return (expired.Count, (IReadOnlyList<AuditEntry>)entries);
            }, cancellationToken);
        }
    }
}
