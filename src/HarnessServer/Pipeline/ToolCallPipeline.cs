using System.Diagnostics;
using HarnessServer.Errors;
using HarnessServer.Observability;
using HarnessServer.Sandbox;
using HarnessServer.Sessions;

namespace HarnessServer.Pipeline;

/// <summary>
/// The one place tool calls run: HTTP calls, agent (model-proposed) calls and approved calls all enter here.
/// The stages run in this order, each traced and audited:
/// (1) <see cref="ResolveToolStep"/> the tool in the tenant's registry,
/// (2) <see cref="ValidateArgumentsStep"/> against its JSON Schema,
/// (3) <see cref="DecideStep"/> with the caller's effective policy,
/// (4) <see cref="CheckpointStep"/>: a call that may change the workspace has it captured first,
/// (5) <see cref="CommitDecisionStep"/>: the call, its decision (and an approval for <c>ask</c>) and their audit events
///     commit together, or nothing happens (503),
/// (6) <see cref="ExecuteStep"/> in the sandbox,
/// (7) <see cref="RecordResultStep"/>: the result and its audit event.
/// Every stage sees what the earlier ones settled: once a call is rejected, denied or pending approval, the later
/// stages only record it, and nothing reaches (6).
/// </summary>
internal sealed class ToolCallPipeline(
    ResolveToolStep resolve,
    ValidateArgumentsStep validate,
    DecideStep decide,
    CheckpointStep checkpoint,
    CommitDecisionStep commit,
    ExecuteStep execute,
    RecordResultStep record,
    SessionGate gate,
    WorkspaceRoot workspaces,
    Data.DatabaseSources sources,
    TenantSandboxUsers sandboxUsers,
    Tenancy.TenantContext tenant)
{
    private readonly IToolCallStep[] _steps = [resolve, validate, decide, checkpoint, commit, execute, record];

    /// <summary>Runs a proposed call through every stage and answers the contract's response.</summary>
    public async Task<ToolCallResponse> RunAsync(ToolCallRequest request, CancellationToken cancellationToken)
    {
        // A call is stored and audited before anything else happens; one that cannot be is refused outright.
        if (request.Tool.Length > Data.ColumnLimits.Identifier)
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_tool_name",
                $"A tool name has at most {Data.ColumnLimits.Identifier} characters; no tool is named like this.");
        }

        if (Http.StorableText.Problem(request.Tool) is { } problem)
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_tool_name",
                $"The tool name cannot be recorded: {problem}; no tool is named like this.");
        }

        if (Tools.ToolArguments.Unrecordable(request.Arguments) is [var first, ..] errors)
        {
            throw new InvalidArgumentsException($"The arguments cannot be decided or recorded: {first.Path}: {first.Reason}", errors);
        }

        if (request.SessionId is not { } sessionId)
        {
            return await RunOutsideSessionAsync(new ToolCallContext(request, null, null), cancellationToken);
        }

        await using var entered = await EnterAsync(request.Caller, sessionId, cancellationToken);
        var session = entered.Session!;
        using var workspace = workspaces.Open(session.TenantId, session.Id.ToString(), await sandboxUsers.OfAsync(session.TenantId, cancellationToken));
        var context = new ToolCallContext(request, session, workspace);
        return await RunStagesAsync(context, cancellationToken);
    }

    /// <summary>Runs an approved call (claimed by the executor); it re-enters before execution, exactly once.</summary>
    public async Task<ToolCallResponse> RunApprovedAsync(ToolCallRequest request, ToolCall approved, CancellationToken cancellationToken)
    {
        if (request.SessionId is not { } sessionId)
        {
            return await RunOutsideSessionAsync(
                new ToolCallContext(request, null, null) { CallId = approved.Id, Approved = approved, ApprovalId = approved.ApprovalId },
                cancellationToken);
        }

        await using var entered = await EnterAsync(request.Caller, sessionId, cancellationToken, ownerOnly: false);
        if (await StartApprovedAsync(approved, cancellationToken) is { } notStarted)
        {
            return notStarted;
        }

        var session = entered.Session!;
        using var workspace = workspaces.Open(session.TenantId, session.Id.ToString(), await sandboxUsers.OfAsync(session.TenantId, cancellationToken));
        var context = new ToolCallContext(request, session, workspace)
        {
            CallId = approved.Id,
            Approved = approved,
            ApprovalId = approved.ApprovalId,
        };
        return await RunStagesAsync(context, cancellationToken);
    }

    /// <summary>
    /// A call outside a session (an HTTP memory request held for approval): no workspace and no session lane, but the
    /// call's own advisory lock is held while it runs, so <see cref="InterruptedCallRecovery"/> can tell a call another
    /// process is running from one whose process died.
    /// </summary>
    private async Task<ToolCallResponse> RunOutsideSessionAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        if (!Tools.BuiltInTools.OutsideSessions.Contains(context.Request.Tool))
        {
            throw new InvalidOperationException($"'{context.Request.Tool}' needs a session; only {string.Join(", ", Tools.BuiltInTools.OutsideSessions)} run outside one.");
        }

        tenant.Set(context.Caller.TenantId);
        await using var _ = await gate.EnterAsync(context.Caller.TenantId, context.CallId, cancellationToken);
        if (context.Approved is { } approved && await StartApprovedAsync(approved, cancellationToken) is { } notStarted)
        {
            return notStarted;
        }

        return await RunStagesAsync(context, cancellationToken);
    }

    /// <summary>
    /// Under the call's lock, an approved call the executor claimed becomes <c>running</c>; null when it did. It does
    /// not when <see cref="InterruptedCallRecovery"/> recorded it <c>interrupted</c> first (a process starting while
    /// this one was between its claim and the lock, which looks the same as a claim whose process died): then the
    /// call does not run and its recorded status is answered.
    /// </summary>
    private async Task<ToolCallResponse?> StartApprovedAsync(ToolCall approved, CancellationToken cancellationToken)
    {
        await using var start = sources.Application.CreateCommand("""
            WITH started AS (
                UPDATE tool_calls SET status = 'Running' WHERE tenant_id = $1 AND id = $2 AND status = 'Approved' RETURNING status)
            SELECT COALESCE((SELECT status FROM started), (SELECT status FROM tool_calls WHERE tenant_id = $1 AND id = $2))
            """);
        start.Parameters.Add(new() { Value = approved.TenantId });
        start.Parameters.Add(new() { Value = approved.Id });
        var status = Enum.Parse<ToolCallStatus>((string)(await start.ExecuteScalarAsync(cancellationToken))!);
        return status == ToolCallStatus.Running
            ? null
            : new ToolCallResponse(approved.Id, approved.Tool, status, null, approved.ApprovalId, null, null, null);
    }

    private async Task<ToolCallResponse> RunStagesAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        using var activity = HarnessTelemetry.ActivitySource.StartActivity("tool_call");
        activity?.SetTag("harness.tenant", context.Caller.TenantId);
        activity?.SetTag("harness.session", context.SessionId);
        activity?.SetTag("harness.tool", context.Request.Tool);
        var started = Stopwatch.GetTimestamp();

        try
        {
            foreach (var step in _steps)
            {
                if (context.Approved is not null && step.SkippedForApprovedCalls)
                {
                    continue;
                }

                using var stage = HarnessTelemetry.ActivitySource.StartActivity($"tool_call.{step.Name}");
                await step.RunAsync(context, cancellationToken);
                stage?.SetTag("harness.status", context.Status?.ToString());
            }
        }
        finally
        {
            if (context.Lease is { } lease)
            {
                await lease.DisposeAsync();
            }
        }

        var status = context.Status ?? ToolCallStatus.Failed;
        activity?.SetTag("harness.status", status.ToString());
        PipelineMetrics.Calls.Add(1, new("tool", context.Request.Tool), new("status", status.ToString()));
        PipelineMetrics.Duration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds, new KeyValuePair<string, object?>("tool", context.Request.Tool));

        return new ToolCallResponse(
            context.CallId,
            context.Request.Tool,
            status,
            context.Decision is { } d ? new DecisionView(d.Effect.ToString().ToLowerInvariant(), d.Level.ToString().ToLowerInvariant(), d.Source, d.Explanation, d.Index) : null,
            context.ApprovalId,
            context.Result,
            context.Error,
            context.AuditSeq);
    }

    // The session is read under its lock, so a call queued behind a pause sees it.
    private async Task<SessionGate.Ticket> EnterAsync(Identity.CurrentUser caller, Guid sessionId, CancellationToken cancellationToken, bool ownerOnly = true)
    {
        tenant.Set(caller.TenantId);
        var entered = await gate.EnterAsync(caller.TenantId, sessionId, cancellationToken);
        try
        {
            // Another tenant's session, or another user's, does not exist for this caller.
            if (entered.Session is not { } session || (ownerOnly && session.OwnerUserId != caller.UserId))
            {
                throw new HarnessError(ErrorKind.NotFound, "session_not_found", $"Session {sessionId} does not exist.");
            }

            if (session.Status == SessionStatus.Paused && ownerOnly)
            {
                throw new HarnessError(ErrorKind.Conflict, "session_paused",
                    $"Session {sessionId} is paused; resume it before calling tools.");
            }

            return entered;
        }
        catch
        {
            await entered.DisposeAsync();
            throw;
        }
    }
}

/// <summary>Arguments no stage could treat consistently (400), with every offending path.</summary>
internal sealed class InvalidArgumentsException(string detail, IReadOnlyList<Tools.ArgumentError> errors)
    : HarnessError(ErrorKind.Invalid, "invalid_arguments", detail)
{
    public override IReadOnlyDictionary<string, object?> Extensions => new Dictionary<string, object?> { ["arguments"] = errors };
}
