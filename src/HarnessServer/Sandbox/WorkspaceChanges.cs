using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

/// <summary>
/// Which folders of workspaces the kernel saw change, from one <c>inotify(7)</c> instance (one per checkpoint index, so
/// one per server process: the per-user limit on instances is small). Every folder a checkpoint reads is watched
/// through the descriptor the checkpoint opened it by (<c>/proc/self/fd/N</c>), so the watch is on exactly that folder,
/// never on something a link or a rename put at its path. A watch reports a change of any entry of its folder: data
/// (including writes through <c>mmap</c>, on the last close), mode, owner, links, creation, deletion and renames, by
/// any process on the host, inside a sandbox or not.
/// <para>
/// It is a shortcut, never the authority: whatever can make it miss something makes the next <see cref="Drain"/>
/// answer null (read everything): a full kernel queue (<c>IN_Q_OVERFLOW</c>), a watch that could not be added (the
/// <c>fs.inotify.max_user_watches</c> limit), a watched folder that vanished without its parent saying so, or too many
/// changed folders to be worth tracking. What inotify cannot see at all — a write through a hard link whose other
/// name is in an unwatched folder — is the caller's to cover (it re-reads folders holding multiply-linked files).
/// </para>
/// </summary>
internal sealed partial class WorkspaceChanges : IDisposable
{
    private const uint InModify = 0x2, InAttrib = 0x4, InCloseWrite = 0x8, InMovedFrom = 0x40, InMovedTo = 0x80,
        InCreate = 0x100, InDelete = 0x200, InDeleteSelf = 0x400, InMoveSelf = 0x800, InUnmount = 0x2000,
        InQueueOverflow = 0x4000, InIgnored = 0x8000, InOnlyDir = 0x0100_0000, InExcludeUnlinked = 0x0400_0000;

    private const uint Mask = InModify | InAttrib | InCloseWrite | InMovedFrom | InMovedTo | InCreate | InDelete
        | InDeleteSelf | InMoveSelf | InOnlyDir | InExcludeUnlinked;

    private const int InNonBlock = 0x800, InCloseOnExec = 0x80000, ENOSPC = 28, ENOMEM = 12, EMFILE = 24;

    private readonly SafeFileHandle _fd;
    private readonly Lock _lock = new();
    private readonly Dictionary<int, (object Workspace, string Path)> _watches = [];
    private readonly Dictionary<object, Tracked> _workspaces = new(ReferenceEqualityComparer.Instance);
    private readonly byte[] _buffer = new byte[64 * 1024];

    private WorkspaceChanges(SafeFileHandle fd) => _fd = fd;

    /// <summary>Changed folders one workspace may collect before tracking them costs more than reading them all.</summary>
    internal int MaxDirtyFolders { get; set; } = 4096;

    private string? _limitReached;

    /// <summary>Why a watch could not be added since the last call, when it was because of a limit of the host (null otherwise).</summary>
    public string? TakeLimitReached()
    {
        lock (_lock)
        {
            var limit = _limitReached;
            _limitReached = null;
            return limit;
        }
    }

    /// <summary>A new instance, or null (with the reason) when the host refuses one.</summary>
    public static WorkspaceChanges? TryCreate(out string? reason)
    {
        var fd = InotifyInit(InNonBlock | InCloseOnExec);
        if (fd < 0)
        {
            reason = $"inotify_init1: {Libc.Describe(Marshal.GetLastPInvokeError())}";
            return null;
        }

        reason = null;
        return new WorkspaceChanges(new SafeFileHandle(fd, ownsHandle: true));
    }

    /// <summary>Starts tracking <paramref name="workspace"/> afresh: what was known of it before is dropped.</summary>
    public void Begin(object workspace)
    {
        lock (_lock)
        {
            End(workspace);
            _workspaces[workspace] = new Tracked();
        }
    }

    /// <summary>Stops tracking <paramref name="workspace"/> (its watches stay until the kernel drops them, and report nothing).</summary>
    public void End(object workspace)
    {
        lock (_lock)
        {
            if (_workspaces.Remove(workspace))
            {
                foreach (var wd in _watches.Where(w => ReferenceEquals(w.Value.Workspace, workspace)).Select(w => w.Key).ToList())
                {
                    _watches.Remove(wd);
                    _ = InotifyRemoveWatch(_fd, wd);
                }
            }
        }
    }

    /// <summary>
    /// Watches the open folder <paramref name="directory"/>, at <paramref name="path"/> in <paramref name="workspace"/>,
    /// before its entries are read: a change after this call is reported, one before it is in what the caller reads.
    /// </summary>
    public void Watch(object workspace, SafeFileHandle directory, string path)
    {
        var added = false;
        directory.DangerousAddRef(ref added);
        try
        {
            lock (_lock)
            {
                if (!_workspaces.TryGetValue(workspace, out var tracked) || tracked.Lost)
                {
                    return;
                }

                var wd = InotifyAddWatch(_fd, $"/proc/self/fd/{directory.DangerousGetHandle()}", Mask);
                if (wd < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno is ENOSPC or ENOMEM or EMFILE)
                    {
                        _limitReached = $"inotify_add_watch: {Libc.Describe(errno)} (fs.inotify.max_user_watches)";
                    }

                    tracked.Lost = true;
                    return;
                }

                // The same folder watched again (moved, or read again) keeps its descriptor: the path is the new one.
                if (_watches.TryGetValue(wd, out var owner) && !ReferenceEquals(owner.Workspace, workspace) && _workspaces.TryGetValue(owner.Workspace, out var other))
                {
                    // One folder in two workspaces (a workspace inside another's folder cannot be, but be exact): both re-read.
                    other.Lost = true;
                }

                _watches[wd] = (workspace, path);
            }
        }
        finally
        {
            if (added)
            {
                directory.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// The folders of <paramref name="workspace"/> that changed since the last call (paths relative to its root, "" the
    /// root), and forgets them; null when changes may have been missed, so the caller must read every folder.
    /// </summary>
    public HashSet<string>? Drain(object workspace)
    {
        lock (_lock)
        {
            ReadEvents();
            if (!_workspaces.TryGetValue(workspace, out var tracked) || tracked.Lost)
            {
                return null;
            }

            var dirty = tracked.Dirty;
            tracked.Dirty = new HashSet<string>(StringComparer.Ordinal);
            return dirty;
        }
    }

    private void ReadEvents()
    {
        while (true)
        {
            var read = ReadCore(_fd, _buffer, _buffer.Length);
            if (read < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == Libc.EINTR)
                {
                    continue;
                }

                if (errno != Libc.EAGAIN)
                {
                    LoseAll();
                }

                return;
            }

            if (read == 0)
            {
                return;
            }

            var offset = 0;
            while (offset + 16 <= read)
            {
                var span = _buffer.AsSpan(offset);
                var wd = BinaryPrimitives.ReadInt32LittleEndian(span);
                var mask = BinaryPrimitives.ReadUInt32LittleEndian(span[4..]);
                var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(span[12..]);
                offset += 16 + length;
                if ((mask & (InQueueOverflow | InUnmount)) != 0)
                {
                    LoseAll();
                    continue;
                }

                if (!_watches.TryGetValue(wd, out var watch) || !_workspaces.TryGetValue(watch.Workspace, out var tracked))
                {
                    continue;
                }

                if ((mask & InIgnored) != 0)
                {
                    // The folder is gone (or its watch was removed): whatever is at its path now, and its parent, are read
                    // again, so a new folder that got the old one's inode number is never taken for it.
                    _watches.Remove(wd);
                    if (watch.Path.Length == 0)
                    {
                        tracked.Lost = true;
                        continue;
                    }
                }

                if (length > 0)
                {
                    // An entry of the folder changed: the folder's listing and that entry are read again.
                    tracked.Add(watch.Path, MaxDirtyFolders);
                }
                else if (watch.Path.Length == 0 && (mask & (InDeleteSelf | InMoveSelf)) != 0)
                {
                    tracked.Lost = true;
                }
                else
                {
                    // The folder itself changed (its mode, or it moved or went): it and its parent are read again.
                    tracked.Add(watch.Path, MaxDirtyFolders);
                    var slash = watch.Path.LastIndexOf('/');
                    tracked.Add(slash < 0 ? "" : watch.Path[..slash], MaxDirtyFolders);
                }
            }
        }
    }

    private void LoseAll()
    {
        foreach (var tracked in _workspaces.Values)
        {
            tracked.Lost = true;
        }
    }

    public void Dispose() => _fd.Dispose();

    private sealed class Tracked
    {
        public HashSet<string> Dirty { get; set; } = new(StringComparer.Ordinal);
        public bool Lost { get; set; }

        public void Add(string path, int max)
        {
            if (!Lost && Dirty.Add(path) && Dirty.Count > max)
            {
                Lost = true;
                Dirty.Clear();
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "inotify_init1", SetLastError = true)]
    private static partial int InotifyInit(int flags);

    [LibraryImport("libc", EntryPoint = "inotify_add_watch", SetLastError = true)]
    private static partial int InotifyAddWatch(SafeFileHandle fd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mask);

    [LibraryImport("libc", EntryPoint = "inotify_rm_watch", SetLastError = true)]
    private static partial int InotifyRemoveWatch(SafeFileHandle fd, int wd);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint ReadCoreNative(SafeFileHandle fd, ref byte buffer, nuint count);

    private static int ReadCore(SafeFileHandle fd, byte[] buffer, int count) => (int)ReadCoreNative(fd, ref buffer[0], (nuint)count);
}
