using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

/// <summary>
/// What says a file is the one seen before without reading it, as git's index does: the kernel sets the change time
/// (<c>ctime</c>) on every write, chmod, rename or link and no caller can set it back, so a rewrite that restores size
/// and modification time still shows. Times are nanoseconds since the epoch.
/// </summary>
internal readonly record struct FileStamp(ulong Device, ulong Inode, long Size, long Modified, long Changed, uint Mode, uint Links)
{
    public static FileStamp Of(in Libc.Statx stat) =>
        new(stat.Device, stat.Inode, (long)stat.Size, stat.Modified, stat.Changed, stat.Mode, stat.Nlink);

    /// <summary>The same inode (a folder, for instance, whatever happened inside it).</summary>
    public bool SameInode(in FileStamp other) => Device == other.Device && Inode == other.Inode;
}

/// <summary>
/// One entry met while walking a workspace for a checkpoint. A regular file comes with its open handle when the
/// walk's caller asked for its content, and without one (<see cref="File"/> null, <see cref="Skipped"/> null) when the
/// caller already knows the content of a file with this <see cref="Stamp"/>.
/// </summary>
internal sealed record SnapshotEntry(string Path, string Kind, uint Mode, long Size, FileStamp Stamp, SafeFileHandle? File, string? Skipped);

internal sealed partial class Workspace
{
    /// <summary>
    /// Walks the workspace for a checkpoint the way <see cref="Search"/> does: every directory and file is opened
    /// confined beneath the root and never through a link, so a link the sandbox planted (even one swapped in during
    /// the walk) is reported as skipped rather than followed into a host file. Directories come before their
    /// contents, in ordinal order. A regular file is opened only when <paramref name="needsContent"/> says so for its
    /// path and stamp (every file when it is null); the caller reads and disposes the handle.
    /// </summary>
    public IEnumerable<SnapshotEntry> Walk(Func<string, FileStamp, bool>? needsContent = null)
    {
        var root = OpenDirectory("", ".");
        return WalkDirectory(root, "", 0, needsContent);
    }

    private IEnumerable<SnapshotEntry> WalkDirectory(SafeFileHandle directory, string prefix, int depth, Func<string, FileStamp, bool>? needsContent)
    {
        using var _ = directory;
        foreach (var entry in ReadFolder(directory, prefix, depth, needsContent))
        {
            if (entry is { Kind: "directory", File: { } folder })
            {
                yield return entry with { File = null };
                foreach (var child in WalkDirectory(folder, entry.Path, depth + 1, needsContent))
                {
                    yield return child;
                }
            }
            else
            {
                yield return entry;
            }
        }
    }

    /// <summary>The workspace's root folder, opened for <see cref="ReadFolder"/>; the caller disposes it.</summary>
    public SafeFileHandle OpenSnapshotRoot() => OpenDirectory("", ".");

    /// <summary>
    /// The folder <paramref name="name"/> of the open folder <paramref name="parent"/>, opened confined and never through
    /// a link, with its stamp; null when it is no longer a folder there.
    /// </summary>
    public static SafeFileHandle? OpenSnapshotFolder(SafeFileHandle parent, string name, out FileStamp stamp)
    {
        stamp = default;
        var fd = Libc.Openat2(parent, name, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC | Libc.O_NOFOLLOW, 0, Confined);
        if (fd < 0)
        {
            return null;
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (Libc.Stat(handle, out var stat) != 0 || stat.Type != Libc.S_IFDIR)
        {
            handle.Dispose();
            return null;
        }

        stamp = FileStamp.Of(stat);
        return handle;
    }

    /// <summary>The stamp of an open folder (or file), or null when it cannot be taken.</summary>
    public static FileStamp? StampOf(SafeFileHandle handle) => Libc.Stat(handle, out var stat) == 0 ? FileStamp.Of(stat) : null;

    /// <summary>
    /// One folder's entries, as <see cref="Walk"/> yields them but without descending: a folder comes with its own
    /// open handle in <see cref="SnapshotEntry.File"/> (the caller disposes it, and reads it with this method when it
    /// wants its entries), <paramref name="depth"/> being the depth of <paramref name="directory"/> itself.
    /// </summary>
    public IEnumerable<SnapshotEntry> ReadFolder(SafeFileHandle directory, string prefix, int depth, Func<string, FileStamp, bool>? needsContent)
    {
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
                        yield return new SnapshotEntry(relative, "directory", 0, 0, default, null, $"cannot be opened: {Libc.Describe(-fd)}");
                        continue;
                    }

                    // The stamp of what was opened: the name may have been swapped since the stat.
                    var folder = new SafeFileHandle(fd, ownsHandle: true);
                    if (Libc.Stat(folder, out var openedFolder) != 0 || openedFolder.Type != Libc.S_IFDIR)
                    {
                        folder.Dispose();
                        yield return new SnapshotEntry(relative, "directory", 0, 0, default, null, "changed kind during the walk");
                        continue;
                    }

                    yield return new SnapshotEntry(relative, "directory", (uint)openedFolder.Mode & 0b111_111_111, 0, FileStamp.Of(openedFolder), folder, null);
                    break;
                case Libc.S_IFDIR:
                    yield return new SnapshotEntry(relative, "directory", 0, 0, default, null, $"deeper than {MaxDepth} levels");
                    break;
                case Libc.S_IFREG when MayRead(stat) && needsContent?.Invoke(relative, FileStamp.Of(stat)) == false:
                    // Known content: nothing is opened, so nothing can be followed.
                    yield return new SnapshotEntry(relative, "file", (uint)stat.Mode & 0b111_111_111, (long)stat.Size, FileStamp.Of(stat), null, null);
                    break;
                case Libc.S_IFREG:
                    var file = Libc.Openat2(directory, name,
                        Libc.O_RDONLY | Libc.O_NONBLOCK | Libc.O_NOCTTY | Libc.O_CLOEXEC | Libc.O_NOFOLLOW, 0, Confined);
                    if (file < 0)
                    {
                        yield return new SnapshotEntry(relative, "file", 0, 0, default, null, $"cannot be opened: {Libc.Describe(-file)}");
                        continue;
                    }

                    var handle = new SafeFileHandle(file, ownsHandle: true);
                    // Decide on what was actually opened: the name may have been swapped since the stat. Its stamp is
                    // taken before the content is read, so a write during the read changes the stamp the next walk sees.
                    if (Libc.Stat(handle, out var opened) != 0 || opened.Type != Libc.S_IFREG || !MayRead(opened))
                    {
                        handle.Dispose();
                        yield return new SnapshotEntry(relative, "file", 0, 0, default, null, "changed kind during the walk, or is a hard link to a file the sandbox does not own");
                        continue;
                    }

                    yield return new SnapshotEntry(relative, "file", (uint)opened.Mode & 0b111_111_111, (long)opened.Size, FileStamp.Of(opened), handle, null);
                    break;
                case Libc.S_IFLNK:
                    yield return new SnapshotEntry(relative, "symlink", 0, 0, default, null, "symbolic links are not captured");
                    break;
                default:
                    yield return new SnapshotEntry(relative, "other", 0, 0, default, null, "not a regular file, directory or link");
                    break;
            }
        }
    }
}
