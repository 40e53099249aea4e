using HarnessServer.Audit;
using HarnessServer.Sessions;
using HarnessServer.Tools;

namespace HarnessServer.Pipeline;

/// <summary>
/// (3.5) Before a call that can change the workspace runs (<c>fs.write</c>, <c>shell.exec</c>, command tools),
/// the workspace is checkpointed, so a rollback can undo it. A checkpoint that cannot be taken fails the call:
/// running a change that could not be undone is not what the user signed up for. The capture only reads the
/// workspace; its row commits with the call's decision (stage 5), so it is durable before the call runs without a
/// commit of its own.
/// </summary>
internal sealed class CheckpointStep(WorkspaceCheckpoints checkpoints, AuditChain audit, TimeProvider time) : IToolCallStep
{
    public string Name => "checkpoint";

    public static bool ChangesWorkspace(ToolDefinition tool) =>
        tool.Kind == ToolKind.Command || tool.Name is BuiltInTools.FsWrite or BuiltInTools.ShellExec;

    public async Task RunAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        // Tools that change a workspace never run outside a session (BuiltInTools.OutsideSessions).
        if (context.IsSettled || context.Tool is null || !ChangesWorkspace(context.Tool) || context.Session is not { } session)
        {
            return;
        }

        (string Hash, CheckpointManifest Manifest) captured;
        try
        {
            captured = checkpoints.Capture(context.Caller.TenantId, context.Workspace);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Sandbox.SandboxException)
        {
            context.Settle(ToolCallStatus.Failed, new ToolCallError("checkpoint_failed", $"The workspace could not be checkpointed before the call, so it did not run: {e.Message}"));
            return;
        }

        var (hash, manifest) = captured;
        context.Checkpoint = (Guid.CreateVersion7(), hash);
        var row = new AuditCommand("""
            INSERT INTO workspace_checkpoints (id, tenant_id, session_id, tool_call_id, tool, tree_hash, files, bytes, skipped, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            """,
            context.Checkpoint.Value.Id, context.Caller.TenantId, session.Id, context.CallId, context.Tool.Name, hash,
            manifest.Files, manifest.Bytes, manifest.Skipped.Count, time.GetUtcNow());
        if (context.Approved is null)
        {
            context.DecisionWrites.Add(row);
            return;
        }

        // An approved call's decision was stored when it was requested: the row commits in the audit writer's next
        // group commit, still before the call runs.
        await audit.AppendAsync(context.Caller.TenantId, [], [row], cancellationToken);
    }
}
