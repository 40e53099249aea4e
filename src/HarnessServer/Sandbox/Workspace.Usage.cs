using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

/// <summary>
/// What one folder holds directly, as <see cref="WorkspaceQuota"/> counts it: the sizes of its regular files, its
/// entries of every kind, the names and stamps of its folders, and whether it holds folders too deep to look into.
/// </summary>
internal sealed record FolderCount(long Bytes, int Entries, IReadOnlyList<(string Name, FileStamp Stamp)> Folders, bool TooDeep);

internal sealed partial class Workspace
{
    /// <summary>
    /// Counts the open folder <paramref name="directory"/> (at <paramref name="depth"/>, the root being 0) without
    /// opening any file: one <c>statx</c> per entry, never following a link.
    /// </summary>
    public static FolderCount CountFolder(SafeFileHandle directory, int depth)
    {
        long bytes = 0;
        var entries = 0;
        var folders = new List<(string, FileStamp)>();
        var tooDeep = false;
        foreach (var (name, _) in ReadEntries(directory))
        {
            // An entry removed since readdir is simply not counted.
            if (Libc.StatNoFollow(directory, name, out var stat) != 0)
            {
                continue;
            }

            entries++;
            if (stat.Type == Libc.S_IFREG)
            {
                bytes += (long)stat.Size;
            }
            else if (stat.Type == Libc.S_IFDIR)
            {
                // The checkpoints stop at the same depth (a restore would drop what is below), so this is the quota's too.
                tooDeep |= depth >= MaxDepth;
                folders.Add((name, FileStamp.Of(stat)));
            }
        }

        return new FolderCount(bytes, entries, folders, tooDeep);
    }

    /// <summary>The folder at <paramref name="relative"/> (a normal path from the root, "" the root), opened confined; null with the errno when it cannot be.</summary>
    public SafeFileHandle? OpenFolderBeneath(string relative, out int errno)
    {
        var fd = Libc.Openat2(_root, relative.Length == 0 ? "." : relative,
            Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC | Libc.O_NOFOLLOW, 0, Confined);
        errno = fd < 0 ? -fd : 0;
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>The size of the regular file at the tool path <paramref name="path"/>, or null when there is none there.</summary>
    public long? FileSizeAt(string path)
    {
        var relative = ResolveBeneath(path);
        var slash = relative.LastIndexOf('/');
        using var parent = OpenFolderBeneath(slash < 0 ? "" : relative[..slash], out _);
        return parent is not null && relative.Length > 0 && Libc.StatNoFollow(parent, relative[(slash + 1)..], out var stat) == 0
            && stat.Type == Libc.S_IFREG
            ? (long)stat.Size
            : null;
    }
}
