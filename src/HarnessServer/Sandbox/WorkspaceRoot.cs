using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

/// <summary>
/// The folder under <c>Harness:WorkspacesPath</c> that holds one workspace per session, as
/// <c>&lt;root&gt;/&lt;tenant&gt;/&lt;sessionId&gt;</c>. When the server is root, the root and tenant folders are root's
/// with mode 0711 (the sandbox user may pass through to bind its own folder but cannot list them) and each session
/// folder belongs to the sandbox user with mode 0700. Inside a sandbox only the session folder is mounted, so other
/// sessions and tenants are not reachable at all.
/// </summary>
internal sealed partial class WorkspaceRoot
{
    private const uint TraverseOnly = 0b111_001_001; // 0711
    private const uint OwnerOnly = 0b111_000_000; // 0700

    private readonly SandboxOptions _options;

    public WorkspaceRoot(IOptions<WorkspaceOptions> workspaces, IOptions<SandboxOptions> sandbox, IHostEnvironment environment)
        : this(Path.GetFullPath(workspaces.Value.WorkspacesPath, environment.ContentRootPath), sandbox.Value)
    {
    }

    internal WorkspaceRoot(string fullPath, SandboxOptions options)
    {
        FullPath = Path.TrimEndingDirectorySeparator(Path.GetFullPath(fullPath));
        _options = options;
        IsRoot = Libc.Geteuid() == 0;
    }

    /// <summary>The absolute path of the workspaces root.</summary>
    public string FullPath { get; }

    /// <summary>Whether the server runs as root, so the sandbox and the files it owns use <c>SandboxUid</c>.</summary>
    internal bool IsRoot { get; }

    /// <summary>Creates the session's workspace (or opens it when it exists) and returns it open.</summary>
    public Workspace Create(string tenant, string sessionId)
    {
        CheckSegment(tenant, nameof(tenant));
        CheckSegment(sessionId, nameof(sessionId));
        using var root = OpenRoot(create: true);
        using var tenantDir = CreateDirectory(root, tenant, TraverseOnly, chownToSandbox: false);
        var session = CreateDirectory(tenantDir, sessionId, OwnerOnly, chownToSandbox: IsRoot);
        return new Workspace(session, Path.Combine(FullPath, tenant, sessionId), _options, IsRoot);
    }

    /// <summary>Opens an existing session workspace; <c>not_found</c> when it was never created.</summary>
    public Workspace Open(string tenant, string sessionId)
    {
        CheckSegment(tenant, nameof(tenant));
        CheckSegment(sessionId, nameof(sessionId));
        using var root = OpenRoot(create: false);
        var fd = Libc.Openat2(root, $"{tenant}/{sessionId}", Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Workspace.Confined);
        if (fd < 0)
        {
            throw fd == -Libc.ENOENT
                ? new SandboxException(SandboxErrors.NotFound, $"Session '{sessionId}' of tenant '{tenant}' has no workspace.")
                : new SandboxException(SandboxErrors.IoError, $"Cannot open the workspace of session '{sessionId}': {Libc.Describe(-fd)}.");
        }

        return new Workspace(new SafeFileHandle(fd, ownsHandle: true), Path.Combine(FullPath, tenant, sessionId), _options, IsRoot);
    }

    /// <summary>A fresh, empty folder the sandbox user owns, for the start-up probe; the caller deletes it.</summary>
    internal string CreateProbeDirectory()
    {
        using var root = OpenRoot(create: true);
        // A leading dot cannot collide with a tenant: tenant names start with a letter or digit.
        var name = $".probe-{Guid.NewGuid():N}";
        using var probe = CreateDirectory(root, name, OwnerOnly, chownToSandbox: IsRoot);
        return Path.Combine(FullPath, name);
    }

    private SafeFileHandle OpenRoot(bool create)
    {
        var created = create && !Directory.Exists(FullPath);
        if (created)
        {
            Directory.CreateDirectory(FullPath);
        }

        // The configured root itself is trusted (administrator's path); everything below it is resolved confined.
        var fd = Libc.Openat2(Libc.AT_FDCWD, FullPath, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, 0);
        if (fd < 0)
        {
            throw new SandboxException(fd == -Libc.ENOENT ? SandboxErrors.NotFound : SandboxErrors.IoError,
                $"Cannot open the workspaces root '{FullPath}': {Libc.Describe(-fd)}.");
        }

        var root = new SafeFileHandle(fd, ownsHandle: true);
        if (created)
        {
            Libc.Fchmod(root, TraverseOnly);
        }

        return root;
    }

    private SafeFileHandle CreateDirectory(SafeFileHandle parent, string name, uint mode, bool chownToSandbox)
    {
        var made = Libc.Mkdirat(parent, name, mode);
        if (made < 0 && made != -Libc.EEXIST)
        {
            throw new SandboxException(SandboxErrors.IoError, $"Cannot create workspace folder '{name}': {Libc.Describe(-made)}.");
        }

        var fd = Libc.Openat2(parent, name, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Workspace.Confined);
        if (fd < 0)
        {
            throw new SandboxException(SandboxErrors.IoError, $"Cannot open workspace folder '{name}': {Libc.Describe(-fd)}.");
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (made == 0)
        {
            // mkdirat applies the umask; the modes above are the access model, so set them exactly.
            var chmod = Libc.Fchmod(handle, mode);
            var chown = chownToSandbox ? Libc.Fchown(handle, (uint)_options.SandboxUid, (uint)_options.SandboxGid) : 0;
            if (chmod < 0 || chown < 0)
            {
                handle.Dispose();
                throw new SandboxException(SandboxErrors.IoError,
                    $"Cannot set the owner or mode of workspace folder '{name}': {Libc.Describe(-Math.Min(chmod, chown))}.");
            }
        }

        return handle;
    }

    private static void CheckSegment(string value, string what)
    {
        if (value is null || !SegmentPattern().IsMatch(value))
        {
            throw new SandboxException(SandboxErrors.InvalidArgument,
                $"The {what} '{value}' cannot name a workspace folder: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit.");
        }
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\\z")]
    private static partial Regex SegmentPattern();
}
