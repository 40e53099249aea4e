namespace HarnessServer.Sandbox;

/// <summary>
/// Runs one command per call in a fresh bubblewrap sandbox: every namespace unshared (no network but its own
/// loopback), nested user namespaces disabled, a read-only root of <c>/usr</c> and a few <c>/etc</c> files, the
/// session workspace at <c>/workspace</c> as the only writable host folder, a private size-capped <c>/tmp</c>, a
/// scrubbed environment, an unprivileged host user, and limits on wall time, CPU, memory, processes and file size.
/// There is no unsandboxed fallback: when <see cref="SandboxProbe"/> failed, every call is refused.
/// </summary>
internal sealed class BubblewrapSandbox
{
    private readonly SandboxProbe _probe;
    private readonly BubblewrapLauncher _launcher;

    public BubblewrapSandbox(SandboxProbe probe, BubblewrapLauncher launcher)
    {
        _probe = probe;
        _launcher = launcher;
    }

    /// <summary>
    /// Runs <paramref name="command"/> and returns what it did; <c>sandbox_unavailable</c> when the sandbox cannot be
    /// created here, <c>invalid_argument</c> for a malformed command. Cancelling kills the sandbox and throws.
    /// </summary>
    public async Task<SandboxResult> RunAsync(SandboxCommand command, CancellationToken cancellationToken)
    {
        var outcome = await _probe.WaitAsync(cancellationToken);
        if (!outcome.IsAvailable)
        {
            throw new SandboxException(SandboxErrors.SandboxUnavailable, $"The sandbox is unavailable: {outcome.FailureReason}");
        }

        return await _launcher.RunAsync(command, cancellationToken);
    }

    /// <summary>
    /// Starts <paramref name="command"/> for a conversation over its stdin and stdout (an MCP stdio server), in the
    /// same sandbox; <c>sandbox_unavailable</c> when there is none here.
    /// </summary>
    public async Task<SandboxedProcess> StartAsync(SandboxCommand command, CancellationToken cancellationToken)
    {
        var outcome = await _probe.WaitAsync(cancellationToken);
        if (!outcome.IsAvailable)
        {
            throw new SandboxException(SandboxErrors.SandboxUnavailable, $"The sandbox is unavailable: {outcome.FailureReason}");
        }

        return await _launcher.StartAsync(command);
    }
}
