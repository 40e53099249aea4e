namespace HarnessServer.Sandbox;

/// <summary>
/// The unprivileged host user and group a sandbox runs as and its workspace's files belong to. Each tenant has its
/// own (<see cref="TenantSandboxUsers"/>), so one tenant's commands cannot read another's workspace on the host.
/// </summary>
internal readonly record struct SandboxUser(int Uid, int Gid)
{
    /// <summary>The shared user of the start-up probe (<c>SandboxUid</c>/<c>SandboxGid</c>).</summary>
    public static SandboxUser ProbeUserOf(SandboxOptions options) => new(options.SandboxUid, options.SandboxGid);
}
