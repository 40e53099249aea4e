using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

internal sealed partial class Workspace
{
    /// <summary>
    /// Makes the workspace <see cref="Owner"/>'s when its folder belongs to someone else: a workspace made before
    /// tenants had their own sandbox users belongs to the shared <c>SandboxUid</c>. Folders and single-link regular
    /// files that had the folder's previous owner become the tenant's; links, devices and hard-linked files keep their
    /// owner (a hard link may name a file outside the workspace). The folder itself changes last, so a walk cut short
    /// is finished at the next open. Only a server running as root calls this; the session's calls are held meanwhile.
    /// </summary>
    internal void EnsureOwned()
    {
        var result = Libc.Stat(_root, out var stat);
        if (result < 0)
        {
            throw Refusal(-result, ".");
        }

        if (stat.Uid == (uint)Owner.Uid && stat.Gid == (uint)Owner.Gid)
        {
            return;
        }

        AdoptDirectory(OpenDirectory("", "."), stat.Uid, depth: 0);
        if (Libc.Fchown(_root, (uint)Owner.Uid, (uint)Owner.Gid) is var chown and < 0)
        {
            throw Refusal(-chown, ".");
        }
    }

    private void AdoptDirectory(SafeFileHandle directory, uint previous, int depth)
    {
        using var _ = directory;
        foreach (var (name, _) in ReadEntries(directory))
        {
            if (Libc.StatNoFollow(directory, name, out var named) != 0 || named.Type is not (Libc.S_IFDIR or Libc.S_IFREG))
            {
                continue;
            }

            var isDirectory = named.Type == Libc.S_IFDIR;
            if (isDirectory && depth >= MaxDepth)
            {
                continue;
            }

            var flags = isDirectory ? Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC : Libc.O_PATH | Libc.O_NOFOLLOW | Libc.O_CLOEXEC;
            var fd = Libc.Openat2(directory, name, flags, 0, Confined);
            if (fd < 0)
            {
                continue;
            }

            var entry = new SafeFileHandle(fd, ownsHandle: true);
            // Decide on what was opened, not on the name's earlier stat.
            var adopt = Libc.Stat(entry, out var opened) == 0 && opened.Uid == previous
                && (opened.Type == Libc.S_IFDIR || (opened.Type == Libc.S_IFREG && opened.Nlink <= 1));
            if (adopt && Libc.Fchown(entry, (uint)Owner.Uid, (uint)Owner.Gid) is var chown and < 0)
            {
                entry.Dispose();
                throw Refusal(-chown, name);
            }

            if (isDirectory && opened.Type == Libc.S_IFDIR)
            {
                AdoptDirectory(entry, previous, depth + 1);
            }
            else
            {
                entry.Dispose();
            }
        }
    }
}
