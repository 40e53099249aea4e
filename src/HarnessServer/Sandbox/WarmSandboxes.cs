using System.Collections.Concurrent;

namespace HarnessServer.Sandbox;

/// <summary>
/// The warm sandboxes of the sessions, one per workspace: started on a session's first command, stopped after
/// <c>WarmIdleSeconds</c> without one, and replaced when it died, when its workspace folder was removed or replaced
/// (a restore that swaps the folder), or when the workspace's owner changed.
/// </summary>
internal sealed class WarmSandboxes : IDisposable
{
    // After a warm sandbox of a workspace failed to start, that workspace's calls run cold for this long.
    private const long BackOffMilliseconds = 60_000;

    private readonly ConcurrentDictionary<string, WarmSandbox> _byWorkspace = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _failedAt = new(StringComparer.Ordinal);
    private readonly long _idleMilliseconds;
    private readonly Timer _sweep;

    public WarmSandboxes(int idleSeconds)
    {
        _idleMilliseconds = idleSeconds * 1000L;
        var every = TimeSpan.FromSeconds(Math.Min(idleSeconds, 30));
        _sweep = new Timer(_ => Sweep(), null, every, every);
    }

    /// <summary>
    /// The workspace's warm sandbox, leased to the caller (started with <paramref name="start"/> when there is none
    /// usable); null when another call of the session holds it, so this one runs cold rather than wait.
    /// </summary>
    public async Task<WarmSandbox?> LeaseAsync(string workspacePath, SandboxUser user, Func<string, SandboxUser, Task<WarmSandbox>> start)
    {
        if (_failedAt.TryGetValue(workspacePath, out var failed) && Environment.TickCount64 - failed < BackOffMilliseconds)
        {
            return null;
        }

        if (_byWorkspace.TryGetValue(workspacePath, out var existing))
        {
            if (!existing.TryLease())
            {
                return null;
            }

            if (!existing.IsStopped && existing.User == user && existing.StillBindsItsWorkspace())
            {
                return existing;
            }

            Retire(existing);
        }

        var fresh = await start(workspacePath, user);
        fresh.TryLease();
        if (!_byWorkspace.TryAdd(workspacePath, fresh))
        {
            // Another call of the session started one meanwhile; it keeps that one.
            fresh.Dispose();
            return null;
        }

        return fresh;
    }

    /// <summary>
    /// Stops a sandbox that never ran a command, and runs the workspace's calls cold for a while: its bwrap could not
    /// be built (a workspace the user cannot reach) or the init could not set a command up.
    /// </summary>
    public void FailedToStart(WarmSandbox sandbox)
    {
        _failedAt[sandbox.WorkspacePath] = Environment.TickCount64;
        Retire(sandbox);
    }

    /// <summary>Forgets and stops a sandbox the caller holds the lease of.</summary>
    public void Retire(WarmSandbox sandbox)
    {
        _byWorkspace.TryRemove(new KeyValuePair<string, WarmSandbox>(sandbox.WorkspacePath, sandbox));
        _ = Task.Run(sandbox.Dispose);
    }

    public void Dispose()
    {
        _sweep.Dispose();
        foreach (var sandbox in _byWorkspace.Values)
        {
            sandbox.Dispose();
        }

        _byWorkspace.Clear();
    }

    // Idle sandboxes, and those whose session is over (the workspace is gone), are stopped; one in use is left alone.
    private void Sweep()
    {
        var now = Environment.TickCount64;
        foreach (var (path, failed) in _failedAt)
        {
            if (now - failed >= BackOffMilliseconds)
            {
                _failedAt.TryRemove(new KeyValuePair<string, long>(path, failed));
            }
        }

        foreach (var sandbox in _byWorkspace.Values)
        {
            var unneeded = sandbox.IsStopped || now - sandbox.LastUsed > _idleMilliseconds || !sandbox.StillBindsItsWorkspace();
            if (unneeded && sandbox.TryLease())
            {
                Retire(sandbox);
            }
        }
    }
}
