using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Approvals;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Policies;
using HarnessServer.Sandbox;
using HarnessServer.Sessions;
using HarnessServer.Tools;
using Microsoft.Extensions.Options;

namespace HarnessServer.Pipeline;

/// <summary>(1) The tool must exist in the tenant's registry and be enabled.</summary>
internal sealed class ResolveToolStep(ToolRegistry registry) : IToolCallStep
{
    public const int StepOrder = 100;
    public int Order => StepOrder;
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

        context.Tool = tool;
    }
}

/// <summary>(2) The arguments must satisfy the tool's JSON Schema; every failing path is named.</summary>
internal sealed class ValidateArgumentsStep : IToolCallStep
{
    public const int StepOrder = 200;
    public int Order => StepOrder;
    public string Name => "validate";

    public Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        if (context.IsSettled || context.Tool is null)
        {
            return Task.CompletedTask;
        }

        var errors = ToolArguments.Validate(context.Tool, context.Request.Arguments);
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
    public const int StepOrder = 300;
    public int Order => StepOrder;
    public string Name => "decide";

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        if (context.IsSettled)
        {
            return;
        }

        var resolver = await policies.ResolverForAsync(context.Caller, cancellationToken);
        // Paths are normalised against the root the tools resolve them against: the file tools and the sandbox both
        // see the workspace at /workspace, never at its host path.
        var decision = resolver.Decide(context.Request.Tool, ToolArguments.Flatten(context.Request.Arguments), Workspace.MountPoint);
        context.Decision = decision;
        switch (decision.Effect)
        {
            case PolicyEffect.Deny:
                context.Settle(ToolCallStatus.Denied, new ToolCallError("denied", decision.Reason ?? "Denied by policy."));
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
/// (4) The call, its decision and (for <c>ask</c>) its approval are stored together with their audit events, in one
/// transaction. If that fails the call does not run: the audit chain answers 503.
/// </summary>
internal sealed class CommitDecisionStep(AuditChain audit, TimeProvider time, IOptions<ApprovalOptions> approvalOptions) : IToolCallStep
{
    public const int StepOrder = 400;
    public int Order => StepOrder;
    public string Name => "commit";
    public bool SkippedForApprovedCalls => true;

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var status = context.Status ?? ToolCallStatus.Running;
        var call = new ToolCall
        {
            Id = context.CallId,
            TenantId = context.Caller.TenantId,
            SessionId = context.Session.Id,
            RequestedBy = context.Caller.UserId,
            RequestedByName = context.Caller.DisplayName,
            RequesterTeams = [.. context.Caller.Teams],
            Tool = context.Request.Tool,
            Arguments = JsonDocument.Parse(context.Request.Arguments.GetRawText()),
            Status = status,
            Decision = context.Decision is null ? null : JsonSerializer.SerializeToDocument(AuditViews.Decision(context.Decision.Value)),
            Error = context.Error is null ? null : JsonSerializer.SerializeToDocument(context.Error, AuditViews.Json),
            ApprovalId = context.ApprovalId,
            CreatedAt = now,
            CompletedAt = status is ToolCallStatus.Rejected or ToolCallStatus.Denied ? now : null,
        };

        var actor = new AuditActor(context.Caller.UserId, context.Caller.DisplayName);
        var requested = new AuditEntry("tool_call.requested", actor, context.Session.Id, call.Tool, Payload: new JsonObject
        {
            ["callId"] = call.Id.ToString(),
            ["arguments"] = JsonNode.Parse(context.Request.Arguments.GetRawText()),
        });
        var settled = context.Status switch
        {
            ToolCallStatus.Rejected => new AuditEntry("tool_call.rejected", actor, context.Session.Id, call.Tool,
                Payload: new JsonObject { ["callId"] = call.Id.ToString(), ["error"] = JsonSerializer.SerializeToNode(context.Error, AuditViews.Json) }),
            _ => new AuditEntry("tool_call.decided", actor, context.Session.Id, call.Tool,
                Decision: AuditViews.Decision(context.Decision!.Value),
                Payload: new JsonObject { ["callId"] = call.Id.ToString(), ["status"] = AuditViews.Status(status), ["approvalId"] = context.ApprovalId?.ToString() }),
        };

        // Plain writes that ride with their audit events: concurrent calls share the writer's round trip and commit.
        var commands = new List<AuditCommand> { PipelineRows.InsertCall(call) };
        if (context.Status == ToolCallStatus.PendingApproval)
        {
            commands.Add(PipelineRows.InsertApproval(new Approval
            {
                Id = context.ApprovalId!.Value,
                TenantId = call.TenantId,
                ToolCallId = call.Id,
                SessionId = call.SessionId,
                RequestedBy = call.RequestedBy,
                RequesterTeams = call.RequesterTeams,
                Tool = call.Tool,
                Reason = context.Decision?.Reason ?? "Policy requires approval.",
                Status = ApprovalStatus.Pending,
                CreatedAt = now,
                ExpiresAt = now + approvalOptions.Value.Expiry,
            }));
        }

        commands.Add(Notification(context));
        var receipt = await audit.AppendAsync(context.Caller.TenantId, [requested, settled], commands, cancellationToken);
        context.AuditSeq = receipt.Seqs[^1];
    }

    /// <summary>Live subscribers of the session hear about the change once it commits.</summary>
    internal static AuditCommand Notification(ToolCallContext context) =>
        SessionEvents.CallChanged(context.Caller.TenantId, context.Session.Id, context.CallId);
}

/// <summary>
/// (5) The call runs: built-ins in the workspace or the sandbox, command tools as argv in the sandbox. A fault of the
/// executor itself fails the call (recorded by the next stage) instead of leaving it <c>running</c> with no result.
/// </summary>
internal sealed class ExecuteStep(ToolExecutors executors, ILogger<ExecuteStep> logger) : IToolCallStep
{
    public const int StepOrder = 500;
    public int Order => StepOrder;
    public string Name => "execute";

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        if (context.IsSettled)
        {
            return;
        }

        ToolOutcome outcome;
        try
        {
            outcome = await executors.RunAsync(context, cancellationToken);
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

/// <summary>(6) The result lands on the session's call together with its audit event.</summary>
internal sealed class RecordResultStep(AuditChain audit, TimeProvider time) : IToolCallStep
{
    public const int StepOrder = 600;
    public int Order => StepOrder;
    public string Name => "record";

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        // New calls settled before execution were stored whole by the commit stage.
        if (context.Approved is null && context.Status is not (ToolCallStatus.Succeeded or ToolCallStatus.Failed))
        {
            return;
        }

        var status = context.Status!.Value;
        var now = time.GetUtcNow();
        var actor = new AuditActor(context.Caller.UserId, context.Caller.DisplayName);
        var executed = new AuditEntry(
            status switch
            {
                ToolCallStatus.Succeeded or ToolCallStatus.Failed => "tool_call.executed",
                ToolCallStatus.Denied => "tool_call.denied",
                _ => "tool_call.rejected",
            },
            actor, context.Session.Id, context.Request.Tool,
            Payload: new JsonObject
            {
                ["callId"] = context.CallId.ToString(),
                ["status"] = AuditViews.Status(status),
                ["resultHash"] = AuditViews.HashOf(context.Result),
                ["error"] = JsonSerializer.SerializeToNode(context.Error, AuditViews.Json),
            });

        var receipt = await audit.AppendAsync(context.Caller.TenantId, [executed],
            [PipelineRows.CompleteCall(context.Caller.TenantId, context.CallId, status, context.Result, context.Error, now), CommitDecisionStep.Notification(context)],
            cancellationToken);
        context.AuditSeq = receipt.Seqs[^1];
    }
}
