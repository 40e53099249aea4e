namespace HarnessServer.Sandbox;

/// <summary>The <c>Harness:Sandbox</c> section: per-call limits of <c>shell.exec</c> and of the file tools.</summary>
internal sealed class SandboxOptions
{
    /// <summary>Cap on each of stdout and stderr of one call; the rest is read and discarded.</summary>
    public int MaxOutputBytes { get; set; } = 1024 * 1024;

    /// <summary>Address-space limit (<c>RLIMIT_AS</c>) of every process in the sandbox.</summary>
    public long MaxMemoryBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>Processes the sandbox's user may have at once (<c>RLIMIT_NPROC</c>, counted in its own user namespace).</summary>
    public int MaxProcesses { get; set; } = 64;

    /// <summary>Largest file a command may write (<c>RLIMIT_FSIZE</c>), the size of its <c>/tmp</c>, and the <c>fs.write</c> limit.</summary>
    public long MaxFileBytes { get; set; } = 100L * 1024 * 1024;

    /// <summary>
    /// Size of the sandbox's <c>/dev/shm</c> tmpfs; 0 for none (then <c>/dev/shm</c> is a read-only directory).
    /// tmpfs pages are charged to no process, so an uncapped one let a sandbox pin the host's memory.
    /// </summary>
    public long ShmBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>
    /// Memory of the whole sandbox (all its processes, and the pages of its <c>/tmp</c> and <c>/dev/shm</c>), held by
    /// its control group where the host lends one (see <see cref="ControlGroups"/>); with rlimits only, nothing holds it.
    /// </summary>
    public long GroupMemoryBytes { get; set; } = 1024L * 1024 * 1024;

    /// <summary>CPU weight of a sandbox's control group (1-10000, 100 is the kernel's default): below the server's by default.</summary>
    public int CpuWeight { get; set; } = 50;

    /// <summary>
    /// A cgroup v2 folder delegated to the server (writable, with the memory and pids controllers), under which each
    /// call gets its own group; empty to use cgroup v1 where it is writable, else rlimits only.
    /// </summary>
    public string CgroupRoot { get; set; } = "";

    /// <summary>Whether writable cgroup v1 memory and pids hierarchies are used when no <see cref="CgroupRoot"/> is set.</summary>
    public bool UseCgroupV1 { get; set; } = true;

    /// <summary>
    /// Bytes (the sizes of its regular files) a session's workspace may hold: a call that leaves it over fails
    /// <c>workspace_quota_exceeded</c> and is undone (see <see cref="WorkspaceQuota"/>).
    /// </summary>
    public long WorkspaceMaxBytes { get; set; } = 4L * 1024 * 1024 * 1024;

    /// <summary>Entries of any kind (files, folders, links) a session's workspace may hold, held like <see cref="WorkspaceMaxBytes"/>.</summary>
    public long WorkspaceMaxFiles { get; set; } = 250_000;

    public int DefaultTimeoutSeconds { get; set; } = 30;
    public int MaxTimeoutSeconds { get; set; } = 300;

    /// <summary>Largest file <c>fs.read</c> returns, and the largest file <c>fs.search</c> looks into.</summary>
    public int MaxReadBytes { get; set; } = 1024 * 1024;

    /// <summary>Matches after which <c>fs.search</c> stops (and says its result is truncated).</summary>
    public int MaxSearchMatches { get; set; } = 200;

    /// <summary>Wall-time budget of one <c>fs.search</c>, regular-expression matching included.</summary>
    public int SearchTimeoutSeconds { get; set; } = 10;

    /// <summary>Entries after which <c>fs.list</c> stops (and says its result is truncated).</summary>
    public int MaxListEntries { get; set; } = 10_000;

    /// <summary>
    /// Host user and group of the start-up probe's sandbox, and the owner that workspaces created before sandbox users
    /// were per tenant still have until they are next opened. Tenants' commands run as <see cref="TenantUidBase"/> + n.
    /// </summary>
    public int SandboxUid { get; set; } = 65534;
    public int SandboxGid { get; set; } = 65534;

    /// <summary>
    /// First host user id of the tenants' sandbox users: tenant n (allocated once, from a database sequence) runs as
    /// uid and gid <c>TenantUidBase + n</c>. Fixed for the life of a deployment; the range must be unused on the host.
    /// </summary>
    public int TenantUidBase { get; set; } = 200_000;

    public string BwrapPath { get; set; } = "/usr/bin/bwrap";

    /// <summary>Drops the server's root privileges before bubblewrap starts (util-linux).</summary>
    public string SetprivPath { get; set; } = "/usr/bin/setpriv";

    /// <summary>Sets the resource limits inside the sandbox before the command starts; must live under <c>/usr</c>.</summary>
    public string PrlimitPath { get; set; } = "/usr/bin/prlimit";

    /// <summary>The largest tenant user id: signed 32-bit, so no tool reads it as negative, and never (uid_t)-1.</summary>
    internal const int MaxTenantUid = int.MaxValue - 1;

    internal IEnumerable<string> Problems() =>
        new (bool Broken, string Message)[]
        {
            (MaxOutputBytes <= 0,
                "Harness:Sandbox:MaxOutputBytes must be positive."),
            (MaxMemoryBytes < 16 * 1024 * 1024,
                "Harness:Sandbox:MaxMemoryBytes must be at least 16 MiB."),
            (MaxProcesses <= 0,
                "Harness:Sandbox:MaxProcesses must be positive."),
            (MaxFileBytes <= 0,
                "Harness:Sandbox:MaxFileBytes must be positive."),
            (GroupMemoryBytes < 16 * 1024 * 1024,
                "Harness:Sandbox:GroupMemoryBytes must be at least 16 MiB."),
            (CpuWeight is < 1 or > 10_000,
                "Harness:Sandbox:CpuWeight must be between 1 and 10000."),
            (CgroupRoot.Length > 0 && !Path.IsPathFullyQualified(CgroupRoot),
                "Harness:Sandbox:CgroupRoot must be empty or an absolute path."),
            (ShmBytes < 0,
                "Harness:Sandbox:ShmBytes must be 0 (no /dev/shm) or positive."),
            (WorkspaceMaxBytes <= 0,
                "Harness:Sandbox:WorkspaceMaxBytes must be positive."),
            (WorkspaceMaxFiles <= 0,
                "Harness:Sandbox:WorkspaceMaxFiles must be positive."),
            (DefaultTimeoutSeconds <= 0,
                "Harness:Sandbox:DefaultTimeoutSeconds must be positive."),
            (MaxTimeoutSeconds < DefaultTimeoutSeconds,
                "Harness:Sandbox:MaxTimeoutSeconds must be at least DefaultTimeoutSeconds."),
            (MaxReadBytes <= 0 || MaxReadBytes > 64 * 1024 * 1024,
                "Harness:Sandbox:MaxReadBytes must be between 1 and 64 MiB."),
            (MaxSearchMatches <= 0,
                "Harness:Sandbox:MaxSearchMatches must be positive."),
            (SearchTimeoutSeconds <= 0,
                "Harness:Sandbox:SearchTimeoutSeconds must be positive."),
            (MaxListEntries <= 0,
                "Harness:Sandbox:MaxListEntries must be positive."),
            // The point of the sandbox user is not being root (nor a negative id that wraps to one).
            (SandboxUid <= 0,
                "Harness:Sandbox:SandboxUid must be a positive, non-root user id."),
            (SandboxGid <= 0,
                "Harness:Sandbox:SandboxGid must be a positive, non-root group id."),
            // Never root or a system or login user (below 1000), nor at or below the shared probe user and 16-bit
            // nobody, which the open-ended range of tenants would otherwise reach.
            (TenantUidBase <= Math.Max(SandboxUid, 65535) || TenantUidBase > MaxTenantUid,
                $"Harness:Sandbox:TenantUidBase must be above 65535 and SandboxUid, and at most {MaxTenantUid}."),
            (!Path.IsPathFullyQualified(BwrapPath),
                "Harness:Sandbox:BwrapPath must be an absolute path."),
            (!Path.IsPathFullyQualified(SetprivPath),
                "Harness:Sandbox:SetprivPath must be an absolute path."),
            (!PrlimitPath.StartsWith("/usr/", StringComparison.Ordinal),
                "Harness:Sandbox:PrlimitPath must be under /usr/ (the only host tree visible in the sandbox)."),
        }.Where(p => p.Broken).Select(p => p.Message);
}

/// <summary>The <c>Harness</c> section's <c>WorkspacesPath</c>: where per-session workspaces live.</summary>
internal sealed class WorkspaceOptions
{
    public string WorkspacesPath { get; set; } = ".data/workspaces";
}
