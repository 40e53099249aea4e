using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

/// <summary>One entry met while walking a workspace for a checkpoint.</summary>
internal sealed record SnapshotEntry(string Path, string Kind, uint Mode, long Size, SafeFileHandle? File, string? Skipped);

internal sealed partial class Workspace
{
    /// <summary>
    /// Walks the workspace for a checkpoint the way <see cref="Search"/> does: every directory and file is opened
    /// confined beneath the root and never through a link, so a link the sandbox planted (even one swapped in during
    /// the walk) is reported as skipped rather than followed into a host file. Regular files come with their open
    /// handle (the caller reads and disposes it); directories come before their contents, in ordinal order.
    /// </summary>
    public IEnumerable<SnapshotEntry> Walk()
    {
        var root = OpenDirectory("", ".");
        return WalkDirectory(root, "", 0);
    }

    private IEnumerable<SnapshotEntry> WalkDirectory(SafeFileHandle directory, string prefix, int depth)
    {
        using var _ = directory;
        var entries = ReadEntries(directory);
        entries.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        foreach (var (name, _) in entries)
        {
            var relative = prefix.Length == 0 ? name : $"{prefix}/{name}";
            if (Libc.StatNoFollow(directory, name, out var stat) != 0)
            {
                continue;
            }

            switch (stat.Type)
            {
                case Libc.S_IFDIR when depth < MaxDepth:
                    var fd = Libc.Openat2(directory, name, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Confined);
                    if (fd < 0)
                    {
                        yield return new SnapshotEntry(relative, "directory", 0, 0, null, $"cannot be opened: {Libc.Describe(-fd)}");
                        continue;
                    }

                    yield return new SnapshotEntry(relative, "directory", (uint)stat.Mode & 0b111_111_111, 0, null, null);
                    foreach (var child in WalkDirectory(new SafeFileHandle(fd, ownsHandle: true), relative, depth + 1))
                    {
                        yield return child;
                    }

                    break;
                case Libc.S_IFDIR:
                    yield return new SnapshotEntry(relative, "directory", 0, 0, null, $"deeper than {MaxDepth} levels");
                    break;
                case Libc.S_IFREG:
                    var file = Libc.Openat2(directory, name,
                        Libc.O_RDONLY | Libc.O_NONBLOCK | Libc.O_NOCTTY | Libc.O_CLOEXEC | Libc.O_NOFOLLOW, 0, Confined);
                    if (file < 0)
                    {
                        yield return new SnapshotEntry(relative, "file", 0, 0, null, $"cannot be opened: {Libc.Describe(-file)}");
                        continue;
                    }

                    var handle = new SafeFileHandle(file, ownsHandle: true);
                    // Decide on what was actually opened: the name may have been swapped since the stat.
                    if (Libc.Stat(handle, out var opened) != 0 || opened.Type != Libc.S_IFREG || !MayRead(opened))
                    {
                        handle.Dispose();
                        yield return new SnapshotEntry(relative, "file", 0, 0, null, "changed kind during the walk, or is a hard link to a file the sandbox does not own");
                        continue;
                    }

                    yield return new SnapshotEntry(relative, "file", (uint)opened.Mode & 0b111_111_111, (long)opened.Size, handle, null);
                    break;
                case Libc.S_IFLNK:
                    yield return new SnapshotEntry(relative, "symlink", 0, 0, null, "symbolic links are not captured");
                    break;
                default:
                    yield return new SnapshotEntry(relative, "other", 0, 0, null, "not a regular file, directory or link");
                    break;
            }
        }
    }
}
