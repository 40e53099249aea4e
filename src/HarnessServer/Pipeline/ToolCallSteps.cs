using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Approvals;
using HarnessServer.Http;
using HarnessServer.Audit;
using HarnessServer.Policies;
using HarnessServer.Sandbox;
using HarnessServer.Sessions;
using HarnessServer.Tools;
using HarnessServer.Webhooks;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Pipeline;

/// <summary>(1) The tool must exist in the tenant's registry and be enabled.</summary>
internal sealed class ResolveToolStep(ToolRegistry registry) : IToolCallStep
{
    public string Name => "resolve";

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        var tool = await registry.FindAsync(context.Caller.TenantId, context.Request.Tool, cancellationToken);
        if (tool is null)
        {
            context.Settle(ToolCallStatus.Rejected, new ToolCallError("unknown_tool", $"No tool named '{context.Request.Tool}' exists in this tenant's registry."));
        }
        else if (!tool.Enabled)
        {
            context.Settle(ToolCallStatus.Rejected, new ToolCallError("tool_disabled", $"Tool '{tool.Name}' is disabled by an administrator."));
        }
        else if (context.Approved is { ToolDigest: { } approved } && approved != tool.Digest)
        {
            // The approver saw the call against the definition of its request; what would run now is something else.
            context.Settle(ToolCallStatus.Rejected, new ToolCallError("tool_changed",
                $"Tool '{tool.Name}' was redefined (kind, argv or schema) after this call was requested; it did not run. Request it again to have the new definition approved."));
        }

        context.Tool = tool;
    }
}

/// <summary>(2) The arguments must satisfy the tool's JSON Schema; every failing path is named.</summary>
internal sealed class ValidateArgumentsStep : IToolCallStep
{
    public string Name => "validate";

    public Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        if (context.IsSettled || context.Tool is null)
        {
            return Task.CompletedTask;
        }

        var errors = ToolArguments.Validate(context.Tool, context.Request.Arguments);
        if (errors.Count == 0)
        {
            errors = ToolArguments.OptionLike(context.Tool, context.Request.Arguments);
        }

        if (errors.Count > 0)
        {
            var first = errors[0];
            context.Settle(ToolCallStatus.Rejected, new ToolCallError("invalid_arguments",
                $"The arguments do not match the schema of '{context.Tool.Name}': {first.Path}: {first.Reason}", errors));
        }

        return Task.CompletedTask;
    }
}

/// <summary>(3) The caller's effective policy decides allow, ask or deny, naming the deciding rule.</summary>
internal sealed class DecideStep(PolicyService policies) : IToolCallStep
{
    public string Name => "decide";

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        if (context.IsSettled)
        {
            return;
        }

        var resolver = await policies.ResolverForAsync(context.Caller, cancellationToken);
        context.Resolver = resolver;
        // Paths are normalised against the root the tools resolve them against: the file tools and the sandbox both
        // see the workspace at /workspace, never at its host path.
        var arguments = ToolArguments.Flatten(context.Request.Arguments);
        if (context.Request.Tool == PolicyResolver.ShellTool && context.Session is not null
            && arguments.TryGetValue("command", out var line) && line is not null)
        {
            // Globs are expanded before the decision, so the paths that will run are the ones decided.
            context.ShellLine = ShellLine.ExpandGlobs(line, context.Workspace.Glob);
            arguments["command"] = context.ShellLine;
        }

        var decision = resolver.Decide(context.Request.Tool, arguments, Workspace.MountPoint);
        if (context.ShellLine is { } decided && GitConfigGuard.Refusal(decision, decided, context.Workspace) is { } refusal)
        {
            // The harness, not the rule that allowed the line, decides this one: no rule can admit what it cannot see.
            decision = decision with
            {
                Effect = PolicyEffect.Deny,
                Reason = refusal,
                DecidedBy = decision.DecidedBy with { Effect = PolicyEffect.Deny, Source = "harness: repository configuration", Index = null, Rule = null, Reason = refusal },
            };
        }

        context.Decision = decision;
        switch (decision.Effect)
        {
            case PolicyEffect.Deny:
                context.Settle(ToolCallStatus.Denied, new ToolCallError("denied", decision.Explanation));
                break;
            // An approved call is decided again when it runs: the approval answers an ask, but a deny that
            // appeared since the request (a new rule, a locked org deny) still wins.
            case PolicyEffect.Ask when context.Approved is not null:
                context.MarkRunning();
                break;
            case PolicyEffect.Ask:
                context.ApprovalId = Guid.CreateVersion7();
                context.Settle(ToolCallStatus.PendingApproval);
                break;
            default:
                context.MarkRunning();
                break;
        }
    }
}

/// <summary>
/// (4) The call, its decision, (for <c>ask</c>) its approval and the rows earlier stages prepared (a workspace
/// checkpoint) are stored together with their audit events, in one transaction, and a call that will run takes its
/// session's execution lease in it too. If that fails the call does not run: the audit chain answers 503.
/// </summary>
internal sealed class CommitDecisionStep(AuditChain audit, CallLeases leases, TimeProvider time, IOptions<ApprovalOptions> approvalOptions) : IToolCallStep
{
    public string Name => "commit";
    public bool SkippedForApprovedCalls => true;

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var status = context.Status ?? ToolCallStatus.Running;
        var arguments = context.Request.Arguments.GetRawText();
        var decision = context.Decision is { } d ? AuditViews.Decision(d) : null;
        var actor = new AuditActor(context.Caller.UserId, context.Caller.DisplayName);
        var callId = context.CallId.ToString();
        var requested = new AuditEntry("tool_call.requested", actor, context.SessionId, context.Request.Tool, Payload: new JsonObject
        {
            ["callId"] = callId,
            ["arguments"] = JsonNode.Parse(arguments),
        });

        // Plain writes that ride with their audit events: concurrent calls share the writer's round trip and commit.
        var commands = new List<AuditCommand> { PipelineRows.InsertCall(context, status, arguments, decision?.ToJsonString(), now) };
        if (status == ToolCallStatus.PendingApproval)
        {
            // The rule that asked says who approves, how many, whether the requester may, and for how long.
            var routing = context.Decision?.Routing ?? ApprovalRouting.Default;
            var approval = new Approval
            {
                Id = context.ApprovalId!.Value,
                TenantId = context.Caller.TenantId,
                ToolCallId = context.CallId,
                SessionId = context.SessionId,
                RequestedBy = context.Caller.UserId,
                RequesterTeams = [.. context.Caller.Teams],
                Tool = context.Request.Tool,
                Reason = context.Decision?.Explanation ?? "Policy requires approval.",
                Preview = ApprovalPreview.Of(context) is { } preview ? JsonSerializer.SerializeToDocument(preview) : null,
                Status = ApprovalStatus.Pending,
                CreatedAt = now,
                ExpiresAt = now + (routing.Expires ?? approvalOptions.Value.Expiry),
                Approvers = [.. routing.Approvers],
                Quorum = routing.Quorum,
                SelfApproval = routing.SelfApproval,
            };
            commands.Add(PipelineRows.InsertApproval(approval));
            // The tenant's webhook hears of it exactly when the held call commits (nothing is written without one).
            commands.Add(ApprovalWebhook.Enqueue(WebhookOutbox.Pending, approval, context.Request.Arguments, now));
            commands.Add(AuditCommand.NotifyChange(WebhookOutbox.ChangeKind, approval.TenantId));
        }

        commands.AddRange(context.DecisionWrites);
        commands.AddRange(Notification(context));
        var settled = status switch
        {
            ToolCallStatus.Rejected => new AuditEntry("tool_call.rejected", actor, context.SessionId, context.Request.Tool,
                Payload: new JsonObject { ["callId"] = callId, ["error"] = JsonSerializer.SerializeToNode(context.Error, AuditViews.Json) }),
            _ => new AuditEntry("tool_call.decided", actor, context.SessionId, context.Request.Tool,
                Decision: decision,
                Payload: Decided(context, callId, status)),
        };

        // A call that will run takes its execution lease in the same transaction, after its row (the lease stamps it).
        var runs = status == ToolCallStatus.Running;
        var scope = context.SessionId ?? context.CallId;
        if (runs)
        {
            commands.Add(leases.AcquireWithDecision(context.Caller.TenantId, scope, context.CallId));
        }

        var sent = DateTime.UtcNow;
        var receipt = await audit.AppendAsync(context.Caller.TenantId, [requested, settled], commands, cancellationToken);
        context.AuditSeq = receipt.Seqs[^1];
        if (runs)
        {
            context.Lease = await leases.TakenAsync(context.Caller.TenantId, scope, receipt.Answers[0], sent);
        }
    }

    // A held call names the workspace (checkpoint and tree hash) its approver is asked about: the approval covers
    // that tree only.
    private static JsonObject Decided(ToolCallContext context, string callId, ToolCallStatus status)
    {
        var payload = new JsonObject { ["callId"] = callId, ["status"] = AuditViews.Status(status), ["approvalId"] = context.ApprovalId?.ToString() };
        if (status == ToolCallStatus.PendingApproval && context.Checkpoint is { } workspace)
        {
            payload["workspace"] = new JsonObject { ["checkpointId"] = workspace.Id.ToString(), ["treeHash"] = workspace.TreeHash };
        }

        return payload;
    }

    /// <summary>Live subscribers of the session hear about the change once it commits.</summary>
    internal static IEnumerable<AuditCommand> Notification(ToolCallContext context) =>
        SessionEvents.CallChanged(context.Caller.TenantId, context.SessionId, context.CallId);
}

/// <summary>
/// (5) The call runs: built-ins in the workspace or the sandbox, command tools as argv in the sandbox. A fault of the
/// executor itself fails the call (recorded by the next stage) instead of leaving it <c>running</c> with no result.
/// </summary>
internal sealed class ExecuteStep(ToolExecutors executors, CallLeases leases, ILogger<ExecuteStep> logger) : IToolCallStep
{
    public string Name => "execute";

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        if (context.IsSettled)
        {
            return;
        }

        // A call runs only under its session's execution lease; its finishing write names the lease's token. A new
        // call took it with its decision, unless another replica held it then; an approved call takes it here.
        var lease = context.Lease ?? await leases.AcquireAsync(context.Caller.TenantId, context.SessionId ?? context.CallId, context.CallId, cancellationToken);
        if (lease is null)
        {
            context.Settle(ToolCallStatus.Interrupted, new ToolCallError("interrupted",
                "The call was recorded as interrupted by another replica before it could run; it did not run."));
            return;
        }

        context.Lease = lease;
        ToolOutcome outcome;
        using var running = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, lease.Lost);
        try
        {
            outcome = await executors.RunAsync(context, running.Token);
        }
        catch (OperationCanceledException) when (lease.Lost.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            outcome = ToolOutcome.Failure("lease_lost",
                "This replica could not renew the session's execution lease (the database was out of reach), so the call was stopped.");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogError(e, "Tool call {Call} ({Tool}) failed inside its executor", context.CallId, context.Request.Tool);
            outcome = ToolOutcome.Failure("executor_error", "The tool failed unexpectedly; the server log has the details.");
        }

        context.Result = outcome.Result;
        context.Settle(outcome.Succeeded ? ToolCallStatus.Succeeded : ToolCallStatus.Failed, outcome.Error);
    }
}

/// <summary>
/// (6) The result lands on the session's call together with its audit event. A call that ran always gets its
/// <c>tool_call.executed</c> event and final status: a result jsonb cannot hold is stored as base64 of its canonical
/// JSON, and if the result still cannot be stored the event and status are recorded without it (its hash is in the
/// event). Only an audit that cannot be written at all leaves the call <c>running</c>, for
/// <see cref="InterruptedCallRecovery"/>'s sweep to find.
/// </summary>
internal sealed class RecordResultStep(AuditChain audit, TimeProvider time, ILogger<RecordResultStep> logger) : IToolCallStep
{
    private static readonly ToolCallError ResultNotStored = new("result_not_stored",
        "The tool ran, but its result could not be stored; the call's executed audit event carries the result's hash.");

    public string Name => "record";

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        // New calls settled before execution were stored whole by the commit stage; a call another replica recorded
        // as interrupted before it could run is recorded already.
        if ((context.Approved is null && context.Status is not (ToolCallStatus.Succeeded or ToolCallStatus.Failed))
            || context.Status == ToolCallStatus.Interrupted)
        {
            return;
        }

        context.Result = StorableResult.Of(context.Result);
        try
        {
            context.AuditSeq = await RecordAsync(context, resultStored: true, cancellationToken) ?? context.AuditSeq;
        }
        catch (AuditUnavailableException e) when (context.Result is not null && !cancellationToken.IsCancellationRequested && !DatabaseFaults.IsUnavailable(e))
        {
            // The call ran: what it did is recorded even if what it returned cannot be. Not when the database itself
            // failed: that append's commit may have gone through, and a second one would record the call twice (the
            // sweep of InterruptedCallRecovery settles a call whose record is missing).
            logger.LogError(e, "The result of call {Call} ({Tool}) could not be stored; recording the call without it", context.CallId, context.Request.Tool);
            context.AuditSeq = await RecordAsync(context, resultStored: false, cancellationToken) ?? context.AuditSeq;
            context.Result = null;
            context.Settle(context.Status!.Value, context.Error ?? ResultNotStored);
        }
    }

    private async Task<long?> RecordAsync(ToolCallContext context, bool resultStored, CancellationToken cancellationToken)
    {
        var status = context.Status!.Value;
        var now = time.GetUtcNow();
        var actor = new AuditActor(context.Caller.UserId, context.Caller.DisplayName);
        var error = resultStored ? context.Error : context.Error ?? ResultNotStored;
        var executed = new AuditEntry(
            status switch
            {
                ToolCallStatus.Succeeded or ToolCallStatus.Failed => "tool_call.executed",
                ToolCallStatus.Denied => "tool_call.denied",
                _ => "tool_call.rejected",
            },
            actor, context.SessionId, context.Request.Tool,
            Payload: new JsonObject
            {
                ["callId"] = context.CallId.ToString(),
                ["status"] = AuditViews.Status(status),
                ["resultHash"] = AuditViews.HashOf(context.Result),
                ["error"] = JsonSerializer.SerializeToNode(error, AuditViews.Json),
            });
        if (!resultStored)
        {
            executed.Payload!["resultStored"] = false;
        }

        if (context.Checkpoint is { } checkpoint)
        {
            // The workspace as it was before the call, by content hash: a rollback to it can be checked against the chain.
            executed.Payload!["checkpoint"] = new JsonObject { ["id"] = checkpoint.Id.ToString(), ["treeHash"] = checkpoint.TreeHash };
        }

        if (context.Lease is { } lease)
        {
            return await RecordLeasedAsync(context, lease, executed, status, resultStored ? context.Result : null, error, now, cancellationToken);
        }

        var receipt = await audit.AppendAsync(context.Caller.TenantId, [executed],
            [PipelineRows.CompleteCall(context.Caller.TenantId, context.CallId, status, resultStored ? context.Result : null, error, now), .. CommitDecisionStep.Notification(context)],
            cancellationToken);
        return receipt.Seqs[^1];
    }

    // The finishing write names the lease's token: if another replica recorded the call interrupted after this one's
    // lease ran out, the write is refused, and no second final event joins the chain. It rides in the writer's group
    // commit like any plain write (a unit of work cost the writer three round trips per call, in series).
    private async Task<long?> RecordLeasedAsync(
        ToolCallContext context, CallLeases.Holding lease, AuditEntry executed, ToolCallStatus status, JsonNode? result, ToolCallError? error,
        DateTimeOffset now, CancellationToken cancellationToken)
    {
        var tenant = context.Caller.TenantId;
        try
        {
            var receipt = await audit.AppendAsync(tenant, [executed],
                [PipelineRows.CompleteLeasedCall(tenant, context.CallId, status, result, error, now, lease.Scope, lease.Token), .. CommitDecisionStep.Notification(context)],
                cancellationToken);
            lease.MarkReleased();
            return receipt.Seqs[^1];
        }
        catch (AuditUnavailableException e) when (e.Cause is PostgresException { SqlState: PipelineRows.LeaseFenced })
        {
            logger.LogWarning("Call {Call} ({Tool}) finished after its lease (token {Token}) ran out and another replica recorded it; its result is not recorded",
                context.CallId, context.Request.Tool, lease.Token);
            context.Result = null;
            context.Settle(ToolCallStatus.Interrupted, new ToolCallError("lease_lost",
                "This replica lost the session's execution lease while the call ran, and another replica recorded the call as interrupted; its result was not recorded."));
            return null;
        }
    }
}
