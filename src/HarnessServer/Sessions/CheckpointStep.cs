using HarnessServer.Data;
using HarnessServer.Pipeline;
using HarnessServer.Tools;

namespace HarnessServer.Sessions;

/// <summary>
/// (4.5) Before a call that can change the workspace runs (<c>fs.write</c>, <c>shell.exec</c>, command tools),
/// the workspace is checkpointed, so a rollback can undo it. A checkpoint that cannot be taken fails the call:
/// running a change that could not be undone is not what the user signed up for.
/// </summary>
internal sealed class CheckpointStep(WorkspaceCheckpoints checkpoints, HarnessDbContext db, TimeProvider time) : IToolCallStep
{
    public int Order => 450;
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

        try
        {
            var (hash, manifest) = checkpoints.Capture(context.Caller.TenantId, context.Workspace);
            db.WorkspaceCheckpoints.Add(new WorkspaceCheckpoint
            {
                Id = Guid.CreateVersion7(),
                TenantId = context.Caller.TenantId,
                SessionId = session.Id,
                ToolCallId = context.CallId,
                Tool = context.Tool.Name,
                TreeHash = hash,
                Files = manifest.Files,
                Bytes = manifest.Bytes,
                Skipped = manifest.Skipped.Count,
                CreatedAt = time.GetUtcNow(),
            });
            await db.SaveChangesAsync(cancellationToken);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Sandbox.SandboxException)
        {
            context.Settle(ToolCallStatus.Failed, new ToolCallError("checkpoint_failed", $"The workspace could not be checkpointed before the call, so it did not run: {e.Message}"));
        }
    }
}
