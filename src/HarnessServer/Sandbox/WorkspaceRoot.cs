using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

/// <summary>
/// The folder under <c>Harness:WorkspacesPath</c> that holds one workspace per session, as
/// <c>&lt;root&gt;/&lt;tenant&gt;/&lt;sessionId&gt;</c>. When the server is root, the root folder is root's with mode 0711,
/// each tenant folder is root's with the tenant's sandbox group and mode 0710 (only that tenant's sandboxes may pass
/// through, to bind their own folder, and none may list it) and each session folder belongs to the tenant's sandbox
/// user with mode 0700. So another tenant's sandbox user cannot even reach a workspace whose path it knows, and inside
/// a sandbox only the session folder is mounted.
/// </summary>
internal sealed partial class WorkspaceRoot
{
    private const uint TraverseOnly = 0b111_001_001; // 0711
    private const uint GroupTraverseOnly = 0b111_001_000; // 0710
    private const uint OwnerOnly = 0b111_000_000; // 0700
    private const uint ModeBits = 0b111_111_111_111; // permissions and set-id/sticky bits

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

    /// <summary>Whether the server runs as root, so folders and files are given to the tenants' sandbox users.</summary>
    internal bool IsRoot { get; }

    /// <summary>Creates the session's workspace for the tenant's sandbox <paramref name="user"/> (or opens it when it exists) and returns it open.</summary>
    public Workspace Create(string tenant, string sessionId, SandboxUser user)
    {
        CheckSegment(tenant, nameof(tenant));
        CheckSegment(sessionId, nameof(sessionId));
        using var root = OpenRoot(create: true);
        using var tenantDir = OpenTenant(root, tenant, user, create: true)
            ?? throw new SandboxException(SandboxErrors.IoError, $"The folder of tenant '{tenant}' vanished while it was created.");
        var session = CreateDirectory(tenantDir, sessionId, OwnerOnly, IsRoot ? user : null);
        return Owned(session, tenant, sessionId, user);
    }

    /// <summary>Opens an existing session workspace as the tenant's sandbox <paramref name="user"/>'s; <c>not_found</c> when it was never created.</summary>
    public Workspace Open(string tenant, string sessionId, SandboxUser user)
    {
        CheckSegment(tenant, nameof(tenant));
        CheckSegment(sessionId, nameof(sessionId));
        using var root = OpenRoot(create: false);
        using var tenantDir = OpenTenant(root, tenant, user, create: false);
        var fd = tenantDir is null ? -Libc.ENOENT
            : Libc.Openat2(tenantDir, sessionId, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Workspace.Confined);
        if (fd < 0)
        {
            throw fd == -Libc.ENOENT
                ? new SandboxException(SandboxErrors.NotFound, $"Session '{sessionId}' of tenant '{tenant}' has no workspace.")
                : new SandboxException(SandboxErrors.IoError, $"Cannot open the workspace of session '{sessionId}': {Libc.Describe(-fd)}.");
        }

        return Owned(new SafeFileHandle(fd, ownsHandle: true), tenant, sessionId, user);
    }

    /// <summary>A fresh, empty folder the shared probe user owns, for the start-up probe; the caller deletes it.</summary>
    internal string CreateProbeDirectory()
    {
        using var root = OpenRoot(create: true);
        // A leading dot cannot collide with a tenant: tenant names start with a letter or digit.
        var name = $".probe-{Guid.NewGuid():N}";
        using var probe = CreateDirectory(root, name, OwnerOnly, IsRoot ? SandboxUser.ProbeUserOf(_options) : null);
        return Path.Combine(FullPath, name);
    }

    /// <summary>
    /// A folder of the server's own directly under the root (mode 0700, no sandbox user may enter), created when
    /// missing; returns its path. <paramref name="name"/> starts with a dot, so it cannot collide with a tenant.
    /// </summary>
    internal string CreateServerFolder(string name)
    {
        using var root = OpenRoot(create: true);
        using var folder = CreateDirectory(root, name, OwnerOnly, owner: null);
        return Path.Combine(FullPath, name);
    }

    // Workspaces made before each tenant had its own sandbox user belong to the shared one: opening one hands it to
    // the tenant's user, so an upgrade needs no manual step (one fstat when nothing is to be done).
    private Workspace Owned(SafeFileHandle session, string tenant, string sessionId, SandboxUser user)
    {
        var workspace = new Workspace(session, Path.Combine(FullPath, tenant, sessionId), _options, user, IsRoot);
        try
        {
            if (IsRoot)
            {
                workspace.EnsureOwned();
            }

            return workspace;
        }
        catch
        {
            workspace.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The tenant's folder, null when it does not exist and is not to be created. As root its owner, group and mode
    /// are set on every open, so a folder from before per-tenant users (root's, mode 0711) is closed to the others.
    /// </summary>
    private SafeFileHandle? OpenTenant(SafeFileHandle root, string tenant, SandboxUser user, bool create)
    {
        var mode = IsRoot ? GroupTraverseOnly : TraverseOnly;
        var made = create ? Libc.Mkdirat(root, tenant, mode) : -Libc.EEXIST;
        if (made < 0 && made != -Libc.EEXIST)
        {
            throw new SandboxException(SandboxErrors.IoError, $"Cannot create workspace folder '{tenant}': {Libc.Describe(-made)}.");
        }

        var fd = Libc.Openat2(root, tenant, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Workspace.Confined);
        if (fd == -Libc.ENOENT && !create)
        {
            return null;
        }

        if (fd < 0)
        {
            throw new SandboxException(SandboxErrors.IoError, $"Cannot open workspace folder '{tenant}': {Libc.Describe(-fd)}.");
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        var stat = default(Libc.Statx);
        var result = IsRoot ? Libc.Stat(handle, out stat) : 0;
        if (result == 0 && IsRoot && (stat.Uid != 0 || stat.Gid != (uint)user.Gid || (stat.Mode & ModeBits) != mode))
        {
            result = Math.Min(Libc.Fchown(handle, 0, (uint)user.Gid), Libc.Fchmod(handle, mode));
        }
        else if (result == 0 && made == 0)
        {
            // mkdirat applies the umask; the modes above are the access model, so set them exactly.
            result = Libc.Fchmod(handle, mode);
        }

        if (result < 0)
        {
            handle.Dispose();
            throw new SandboxException(SandboxErrors.IoError,
                $"Cannot set the owner or mode of workspace folder '{tenant}': {Libc.Describe(-result)}.");
        }

        return handle;
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

    private static SafeFileHandle CreateDirectory(SafeFileHandle parent, string name, uint mode, SandboxUser? owner)
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
            var chown = owner is { } user ? Libc.Fchown(handle, (uint)user.Uid, (uint)user.Gid) : 0;
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
