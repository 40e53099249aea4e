using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Sessions;
using HarnessServer.Tools;

namespace HarnessServer.Pipeline;

/// <summary>
/// (4) Before a call that can change the workspace runs (<c>fs.write</c>, <c>shell.exec</c>, command tools),
/// the workspace is checkpointed, so a rollback can undo it. A checkpoint that cannot be taken fails the call:
/// running a change that could not be undone is not what the user signed up for. The capture only reads the
/// workspace; its row commits with the call's decision (stage 5), so it is durable before the call runs without a
/// commit of its own.
/// <para>
/// A call held for approval is checkpointed when it is asked, so the approval is bound to the workspace the approver
/// was shown (the decision event names its tree hash). When the approved call comes to run, the workspace is captured
/// again: if it changed since (a <c>Makefile</c>, a script, <c>.git/config</c>, by any call or anything else), the call
/// does not run and is rejected <c>workspace_changed</c>; if not, the checkpoint of the ask is the one before the call.
/// </para>
/// </summary>
// No EF context: resolving one with the pipeline built it on every call, a denied one too, for a read only approved
// calls make (bench/results/pipeline.md, profile of 2026-12-02).
internal sealed class CheckpointStep(WorkspaceCheckpoints checkpoints, AuditChain audit, DatabaseSources sources, TimeProvider time) : IToolCallStep
{
    public const string WorkspaceChanged = "workspace_changed";

    public string Name => "checkpoint";

    public static bool ChangesWorkspace(ToolDefinition tool) =>
        tool.Kind is ToolKind.Command or ToolKind.Mcp || tool.Name is BuiltInTools.FsWrite or BuiltInTools.ShellExec;

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        // Tools that change a workspace never run outside a session (BuiltInTools.OutsideSessions).
        var asked = context.Status == ToolCallStatus.PendingApproval;
        if ((context.IsSettled && !asked) || context.Tool is null || !ChangesWorkspace(context.Tool) || context.Session is not { } session)
        {
            return;
        }

        CapturedCheckpoint captured;
        try
        {
            captured = checkpoints.Capture(context.Caller.TenantId, context.Workspace);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Sandbox.SandboxException)
        {
            context.Settle(ToolCallStatus.Failed, new ToolCallError("checkpoint_failed", $"The workspace could not be checkpointed before the call, so it did not run: {e.Message}"));
            return;
        }

        var hash = captured.Hash;
        if (context.Approved is not null && await AskedInAsync(context.Caller.TenantId, context.CallId, cancellationToken) is { } seen)
        {
            if (seen.TreeHash != hash)
            {
                context.Settle(ToolCallStatus.Rejected, new ToolCallError(WorkspaceChanged,
                    $"The workspace changed after the call was approved (approved in tree {seen.TreeHash}, now {hash}), so the approval does not cover " +
                    "what would run; the call did not run. Ask again to have the current workspace approved."));
                return;
            }

            context.Checkpoint = (seen.Id, seen.TreeHash);
            return;
        }

        context.Checkpoint = (Guid.CreateVersion7(), hash);
        var row = new AuditCommand("""
            INSERT INTO workspace_checkpoints (id, tenant_id, session_id, tool_call_id, tool, tree_hash, files, bytes, skipped, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            """,
            context.Checkpoint.Value.Id, context.Caller.TenantId, session.Id, context.CallId, context.Tool.Name, hash,
            captured.Files, captured.Bytes, captured.Skipped.Count, time.GetUtcNow());
        if (context.Approved is null)
        {
            context.DecisionWrites.Add(row);
            return;
        }

        // A call held before asks were checkpointed: its checkpoint commits in the audit writer's next group commit,
        // still before the call runs.
        await audit.AppendAsync(context.Caller.TenantId, [], [row], cancellationToken);
    }

    // The checkpoint taken when the call was asked, if it was.
    private async Task<(Guid Id, string TreeHash)?> AskedInAsync(string tenant, Guid callId, CancellationToken cancellationToken)
    {
        await using var first = sources.Application.CreateCommand("""
            SELECT id, tree_hash FROM workspace_checkpoints WHERE tenant_id = $1 AND tool_call_id = $2 ORDER BY created_at LIMIT 1
            """);
        first.Parameters.Add(new() { Value = tenant });
        first.Parameters.Add(new() { Value = callId });
        await using var reader = await first.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? (reader.GetGuid(0), reader.GetString(1)) : null;
    }
}
