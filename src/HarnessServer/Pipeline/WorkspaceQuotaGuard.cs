using System.Runtime.ExceptionServices;
using System.Text;
using HarnessServer.Errors;
using HarnessServer.Sandbox;
using HarnessServer.Sessions;
using HarnessServer.Tools;

namespace HarnessServer.Pipeline;

/// <summary>
/// Holds a call that can write the workspace to the workspace's quota (<see cref="WorkspaceQuota"/>): the workspace
/// is measured before it runs; <c>fs.write</c> is refused up front when its content would go over; while it runs the
/// workspace is sampled and the call stopped once it is over; and a call that leaves it over fails
/// <c>workspace_quota_exceeded</c> and the workspace is restored to the call's checkpoint (step 4), so the excess is
/// gone. The call is still recorded as executed (failed) by the record step, like any other failure of a call that ran.
/// </summary>
internal sealed class WorkspaceQuotaGuard(WorkspaceQuota quota, WorkspaceCheckpoints checkpoints, ILogger<WorkspaceQuotaGuard> logger)
{
    public async Task<ToolOutcome> RunAsync(ToolCallContext context, Func<CancellationToken, Task<ToolOutcome>> run, CancellationToken cancellationToken)
    {
        if (context.Session is null || context.Tool is not { } tool || !CheckpointStep.ChangesWorkspace(tool) || context.Checkpoint is not { } checkpoint)
        {
            return await run(cancellationToken);
        }

        var workspace = context.Workspace;
        WorkspaceUsage before;
        try
        {
            before = quota.Measure(workspace);
            if (tool.Name == BuiltInTools.FsWrite && RefusedWrite(context, workspace, before) is { } refused)
            {
                return refused;
            }
        }
        catch (SandboxException e)
        {
            return ToolOutcome.Failure(e.Code, e.Message);
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var over = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var watch = WatchAsync(workspace, before, over, stop.Token);
        ToolOutcome? outcome = null;
        ExceptionDispatchInfo? fault = null;
        try
        {
            outcome = await run(over.Token);
        }
        catch (OperationCanceledException) when (over.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            // Stopped by the sample that found the workspace over its quota: what it wrote is undone below.
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Whatever failed, the excess it may have written is not left behind; the fault is reported after the check.
            fault = ExceptionDispatchInfo.Capture(e);
        }
        finally
        {
            await stop.CancelAsync();
        }

        var sampled = await watch;
        var after = quota.Measure(workspace);
        var excess = quota.Excess(before, after) ?? (sampled is { } atStop ? quota.Excess(before, atStop) : null);
        if (excess is null)
        {
            fault?.Throw();
            return outcome!;
        }

        var stopped = outcome is null && fault is null ? "was stopped" : "ran";
        return ToolOutcome.Failure(SandboxErrors.WorkspaceQuotaExceeded,
            $"The call {stopped} and took the workspace over its quota ({excess}), so it failed; {Undo(context, checkpoint)}.", outcome?.Result);
    }

    private ToolOutcome? RefusedWrite(ToolCallContext context, Workspace workspace, WorkspaceUsage before)
    {
        var arguments = context.Request.Arguments;
        var path = arguments.GetProperty("path").GetString()!;
        var bytes = Encoding.UTF8.GetByteCount(arguments.GetProperty("content").GetString()!);
        var existing = workspace.FileSizeAt(path);
        // Folders the write would create are counted by the check after it.
        var projected = before with { Bytes = before.Bytes - (existing ?? 0) + bytes, Entries = before.Entries + (existing is null ? 1 : 0) };
        return quota.Excess(before, projected) is { } excess
            ? ToolOutcome.Failure(SandboxErrors.WorkspaceQuotaExceeded,
                $"Writing {bytes} bytes to '{path}' would take the workspace over its quota ({excess}); nothing was written.")
            : null;
    }

    private async Task<WorkspaceUsage?> WatchAsync(Workspace workspace, WorkspaceUsage before, CancellationTokenSource over, CancellationToken stop)
    {
        var usage = await Task.Run(() => quota.WatchAsync(workspace, before, stop), CancellationToken.None);
        if (usage is not null)
        {
            await over.CancelAsync();
        }

        return usage;
    }

    // The pre-call checkpoint is exactly what the call started from: restoring it removes the excess and nothing else
    // the session had.
    private string Undo(ToolCallContext context, (Guid Id, string TreeHash) checkpoint)
    {
        var workspace = context.Workspace;
        try
        {
            checkpoints.Restore(context.Caller.TenantId, context.Session!.Id.ToString(), checkpoint.TreeHash, workspace.Owner);
            return $"the workspace was restored to checkpoint {checkpoint.Id} (tree {checkpoint.TreeHash}), taken just before the call";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or SandboxException or HarnessError)
        {
            logger.LogError(e, "Workspace {Workspace} is over its quota after call {Call} and could not be restored to checkpoint {Checkpoint}",
                workspace.FullPath, context.CallId, checkpoint.Id);
            return $"restoring checkpoint {checkpoint.Id} failed ({e.Message}), so the excess is still in the workspace";
        }
        finally
        {
            quota.Forget(workspace.FullPath);
        }
    }
}
