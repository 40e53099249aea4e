using System.ComponentModel;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

/// <summary>Whether sandboxed execution works on this machine, and why not when it does not.</summary>
internal sealed record SandboxAvailability(bool IsAvailable, string? FailureReason);

/// <summary>
/// Checks once, at start-up, that a sandbox can really be built here: confined lookups (<c>openat2</c>) work on the
/// workspaces root, and bubblewrap with the real options starts, mounts a workspace and runs as the unprivileged
/// shared probe user (<c>id -u</c> must print <c>SandboxUid</c>; tenants' sandboxes run as their own users). The server still starts when this fails — the file tools
/// and <c>shell.exec</c> then refuse with <c>sandbox_unavailable</c> and <c>/readyz</c> says why.
/// </summary>
internal sealed class SandboxProbe : IHostedService
{
    private readonly Lazy<Task<SandboxAvailability>> _outcome;

    public SandboxProbe(IOptions<SandboxOptions> options, WorkspaceRoot workspaces, BubblewrapLauncher launcher, ILogger<SandboxProbe> logger) =>
        _outcome = new(() => Task.Run(() => ProbeAsync(options.Value, workspaces, launcher, logger)));

    /// <summary>True once the probe succeeded; false before it finished and when it failed.</summary>
    public bool IsAvailable => _outcome.IsValueCreated && _outcome.Value.IsCompletedSuccessfully && _outcome.Value.Result.IsAvailable;

    /// <summary>Why the sandbox is unavailable; null when it is available or the probe has not finished.</summary>
    public string? FailureReason => _outcome.IsValueCreated && _outcome.Value.IsCompletedSuccessfully ? _outcome.Value.Result.FailureReason : null;

    /// <summary>The probe's outcome, running it first if it has not run yet.</summary>
    public Task<SandboxAvailability> WaitAsync(CancellationToken cancellationToken) => _outcome.Value.WaitAsync(cancellationToken);

    async Task IHostedService.StartAsync(CancellationToken cancellationToken) => await WaitAsync(cancellationToken);

    Task IHostedService.StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private static async Task<SandboxAvailability> ProbeAsync(SandboxOptions options, WorkspaceRoot workspaces,
        BubblewrapLauncher launcher, ILogger logger)
    {
        string? directory = null;
        try
        {
            directory = workspaces.CreateProbeDirectory();
            var opened = Libc.Openat2(Libc.AT_FDCWD, directory, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, 0);
            if (opened < 0)
            {
                return Fail(logger, $"openat2(2) is not usable ({Libc.Describe(-opened)}); Linux 5.6 or later is required.");
            }

            using (var probeDirectory = new SafeFileHandle(opened, ownsHandle: true))
            {
                var confined = Libc.Openat2(probeDirectory, ".", Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Workspace.Confined);
                if (confined < 0)
                {
                    return Fail(logger, $"openat2(2) refuses RESOLVE_BENEATH lookups ({Libc.Describe(-confined)}).");
                }

                new SafeFileHandle(confined, ownsHandle: true).Dispose();
            }
            var result = await launcher.RunAsync(
                new SandboxCommand { WorkspacePath = directory, User = SandboxUser.ProbeUserOf(options), Argv = ["id", "-u"], TimeoutSeconds = 10 }, CancellationToken.None);
            if (result.ExitCode != 0)
            {
                return Fail(logger, $"bubblewrap could not start a sandbox (exit code {result.ExitCode}): {result.Stderr.Trim()}");
            }

            if (result.Stdout.Trim() != $"{options.SandboxUid}")
            {
                return Fail(logger, $"the sandbox runs as user id {result.Stdout.Trim()}, not {options.SandboxUid}.");
            }

            logger.LogInformation("Sandbox available: bubblewrap started as user {Uid} in {Duration} ms.", options.SandboxUid, result.DurationMs);
            return new SandboxAvailability(true, null);
        }
        catch (Exception e) when (e is Win32Exception or SandboxException or IOException or UnauthorizedAccessException)
        {
            return Fail(logger, $"{e.Message} (is bubblewrap installed at {options.BwrapPath}, and util-linux's setpriv and prlimit?)");
        }
        finally
        {
            if (directory is not null && Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
    }

    private static SandboxAvailability Fail(ILogger logger, string reason)
    {
        logger.LogError("Sandbox unavailable, shell.exec and the file tools will refuse every call: {Reason}", reason);
        return new SandboxAvailability(false, reason);
    }
}

/// <summary>Ready only when the sandbox probe succeeded (and saying what holds its limits and the workspace quota); otherwise unhealthy with the probe's reason.</summary>
internal sealed class SandboxHealthCheck(SandboxProbe probe, ControlGroups groups, WorkspaceQuota quota) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var outcome = await probe.WaitAsync(cancellationToken);
        return outcome.IsAvailable
            ? HealthCheckResult.Healthy($"bubblewrap sandbox available; limits: {groups.Description}; workspace quota: {quota.Description}")
            : HealthCheckResult.Unhealthy($"Sandbox unavailable: {outcome.FailureReason}");
    }
}
