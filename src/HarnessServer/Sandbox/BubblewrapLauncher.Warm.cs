using System.Diagnostics;

namespace HarnessServer.Sandbox;

/// <summary>
/// The warm path (<c>Harness:Sandbox:Warm</c>): a session's commands run in its one long-lived sandbox
/// (<see cref="WarmSandbox"/>) instead of a new bubblewrap each, which saves creating and tearing down every namespace
/// per call. Whenever the warm sandbox is unusable (its init missing or failing, or busy with another call of the
/// session) the call runs cold, in a sandbox of its own, as before.
/// </summary>
internal sealed partial class BubblewrapLauncher : IDisposable
{
    /// <summary>Where harness-init is bound inside a warm sandbox (on the root, which is then made read-only).</summary>
    private const string WarmInitPath = "/.harness-init";

    /// <summary>harness-init as the build put it beside the server (HarnessServer.csproj compiles it with gcc).</summary>
    internal static readonly string WarmInitHostPath = Path.Combine(AppContext.BaseDirectory, "harness-init");

    private WarmSandboxes? _warm;

    private WarmSandboxes Warm => LazyInitializer.EnsureInitialized(ref _warm, () => new WarmSandboxes(_options.WarmIdleSeconds));

    private string MemoryNote => $"\n[the sandbox reached its memory limit of {_options.GroupMemoryBytes} bytes: the kernel killed a process]";

    /// <summary>Stops every warm sandbox (the server is stopping).</summary>
    public void Dispose() => _warm?.Dispose();

    /// <summary>Runs the command in the session's warm sandbox; null when it must run cold instead (nothing ran).</summary>
    private async Task<SandboxResult?> RunWarmAsync(SandboxCommand command, int timeout, CancellationToken cancellationToken)
    {
        if (!File.Exists(WarmInitHostPath))
        {
            return null;
        }

        // The limits prlimit sets on the cold path; /tmp is capped at the file size limit, as there.
        var request = new WarmRequest(timeout + 1, _options.MaxMemoryBytes, _options.MaxProcesses, _options.MaxFileBytes, _options.MaxFileBytes,
            _options.ShmBytes, [.. CommandLine(command)], [.. CommandEnvironment(command).Select(e => $"{e.Name}={e.Value}")]);
        // A second try on a fresh sandbox when the one kept from earlier calls turns out to have died meanwhile.
        for (var attempt = 0; attempt < 2; attempt++)
        {
            var sandbox = await Warm.LeaseAsync(command.WorkspacePath, command.User, StartWarmAsync);
            if (sandbox is null)
            {
                return null;
            }

            try
            {
                var result = await sandbox.RunAsync(request, timeout, _options.MaxOutputBytes, MemoryNote, cancellationToken);
                if (result is not null)
                {
                    if (result.TimedOut)
                    {
                        logger.LogInformation("Sandboxed command killed at its {Timeout} s time limit.", timeout);
                    }

                    return result;
                }

                if (!sandbox.HasRun)
                {
                    Warm.FailedToStart(sandbox);
                    logger.LogWarning("A warm sandbox did not start ({Failure}; {Errors}); the workspace's commands run cold for a while.",
                        sandbox.Failure, (await sandbox.ErrorsAsync()).Trim());
                    return null;
                }

                Warm.Retire(sandbox);
                logger.LogInformation("A session's warm sandbox had stopped ({Failure}); starting a new one.", sandbox.Failure);
            }
            finally
            {
                sandbox.EndLease();
            }
        }

        return null;
    }

    private async Task<WarmSandbox> StartWarmAsync(string workspacePath, SandboxUser user)
    {
        var identity = WarmSandbox.WorkspaceIdentity(workspacePath);
        // The group holds the warm sandbox as a whole: the memory and processes of the init and of the command running.
        var group = groups.Create();
        try
        {
            var start = SandboxStartInfo(user, workspacePath, group, WarmInitHostPath);
            Add(start.ArgumentList, "--", WarmInitPath);
            var process = new Process { StartInfo = start };
            await ForkThread.StartAsync(process);
            return await WarmSandbox.AttachAsync(process, group, workspacePath, user, identity);
        }
        catch
        {
            group?.Release();
            throw;
        }
    }
}
