using System.Collections.Concurrent;
using HarnessServer.Sandbox;

namespace HarnessServer.Sessions;

/// <summary>
/// What each workspace's last capture in this process saw, like git's index: per folder its tree and, per file, its
/// <see cref="FileStamp"/> and content hash; and which folders the kernel has seen change since
/// (<see cref="WorkspaceChanges"/>, one inotify instance for the whole index). A capture reads only the folders that
/// changed (and those holding a multiply-linked file, whose other name may be anywhere); in a folder it reads, a file
/// is read again unless its stamp is exactly the recorded one, and never when the stamp is "racy": changed so shortly
/// before the capture that recorded it that a later write in the same timestamp tick would leave the stamp as it was
/// (<see cref="RacyWindow"/>). A process without an index for a workspace (restarted, or another server), a lost
/// change (queue overflow, watch limit), a collection since, or <see cref="FullWalkInterval"/> passing make the next
/// capture read every folder, so the index is only ever a shortcut.
/// Memory is bounded: past <see cref="MaxFiles"/> recorded files the least recently captured workspaces are dropped.
/// </summary>
internal sealed class CheckpointIndex : IDisposable
{
    /// <summary>About 150 bytes each: 1,000,000 files take ~150 MB at most.</summary>
    internal const int MaxFiles = 1_000_000;

    /// <summary>
    /// Longer than any Linux file system's timestamp granularity (ext4, xfs, btrfs and tmpfs keep nanoseconds but take
    /// them from a clock that ticks every few milliseconds; some keep whole seconds, FAT two), so a file whose
    /// ctime or mtime is at least this long before the recording capture began cannot be rewritten in the same tick.
    /// </summary>
    internal TimeSpan RacyWindow { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// How long a capture may rely on change notification before it reads every folder again: bounds what inotify
    /// cannot see (a hard link made from outside the workspace to a file in it, then written through; a file kept
    /// mapped by a process outside any sandbox).
    /// </summary>
    internal TimeSpan FullWalkInterval { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Changed folders a workspace may collect between captures before it is read whole instead.</summary>
    internal int MaxDirtyFolders { get; set; } = 4096;

    private readonly ConcurrentDictionary<string, IndexEntry> _workspaces = new(StringComparer.Ordinal);
    private readonly Lock _changesLock = new();
    private WorkspaceChanges? _changes;
    private long _changesRetryAt;
    private long _files;

    /// <summary>Why change notification is off, when it is (null while it works or before the first capture).</summary>
    public string? ChangeTrackingProblem { get; private set; }

    /// <summary>Nanoseconds since the epoch on the clock file times are taken from.</summary>
    internal static long Now() => (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;

    /// <summary>
    /// Takes the workspace's entry out for one capture (the session gate runs one at a time; a concurrent one would
    /// only read everything). <paramref name="epoch"/> is the store's collection epoch: blobs of an entry recorded
    /// before a collection are checked to still exist, and its trees are not reused.
    /// </summary>
    public IndexEntry? Take(string workspace, string epoch)
    {
        if (!_workspaces.TryRemove(workspace, out var entry))
        {
            return null;
        }

        Interlocked.Add(ref _files, -entry.FileCount);
        entry.Current = entry.Epoch == epoch;
        entry.RacyNanoseconds = RacyWindow.Ticks * 100;
        return entry;
    }

    /// <summary>
    /// The folders of <paramref name="entry"/>'s workspace that changed since its last capture, or null when the
    /// capture must read them all (nothing tracked, changes lost, a collection since, the full-walk interval passed).
    /// </summary>
    public HashSet<string>? Changed(IndexEntry entry, long now)
    {
        if (!entry.Current || entry.Changes is null || now - entry.LastFullWalk >= FullWalkInterval.Ticks * 100)
        {
            return null;
        }

        return entry.Changes.Drain(entry);
    }

    /// <summary>Starts tracking the entry's workspace afresh, before a capture reads every folder; false when change notification is off.</summary>
    public bool BeginTracking(IndexEntry entry, long now)
    {
        entry.Changes?.End(entry);
        entry.Changes = null;
        entry.LastFullWalk = now;
        lock (_changesLock)
        {
            if (_changes?.TakeLimitReached() is { } limit)
            {
                // A host limit (watches are counted per user): new workspaces go untracked for a while, then try again.
                ChangeTrackingProblem = limit;
                _changesRetryAt = Environment.TickCount64 + 60_000;
            }

            if (Environment.TickCount64 < _changesRetryAt)
            {
                return false;
            }

            if (_changes is null)
            {
                _changes = WorkspaceChanges.TryCreate(out var reason);
                ChangeTrackingProblem = reason;
                if (_changes is null)
                {
                    _changesRetryAt = Environment.TickCount64 + 60_000;
                    return false;
                }
            }

            _changes.MaxDirtyFolders = MaxDirtyFolders;
            entry.Changes = _changes;
        }

        entry.Changes?.Begin(entry);
        return entry.Changes is not null;
    }

    public void Put(string workspace, IndexEntry entry)
    {
        entry.LastUsed = Environment.TickCount64;
        if (_workspaces.TryAdd(workspace, entry))
        {
            Interlocked.Add(ref _files, entry.FileCount);
        }
        else
        {
            entry.Changes?.End(entry);
        }

        while (Interlocked.Read(ref _files) > MaxFiles && _workspaces.Count > 1)
        {
            var oldest = _workspaces.OrderBy(w => w.Value.LastUsed).First();
            if (_workspaces.TryRemove(oldest.Key, out var dropped))
            {
                Interlocked.Add(ref _files, -dropped.FileCount);
                dropped.Changes?.End(dropped);
            }
        }
    }

    public void Forget(string workspace)
    {
        if (_workspaces.TryRemove(workspace, out var entry))
        {
            Interlocked.Add(ref _files, -entry.FileCount);
            entry.Changes?.End(entry);
        }
    }

    /// <summary>Drops an entry taken out by <see cref="Take"/> that will not be put back (its capture failed).</summary>
    public static void Abandon(IndexEntry entry) => entry.Changes?.End(entry);

    public void Dispose()
    {
        lock (_changesLock)
        {
            _changes?.Dispose();
            _changes = null;
        }
    }

    /// <summary>A file as a capture recorded it: its stamp, the hash and size of the content read, and when that capture began.</summary>
    internal sealed record IndexedFile(FileStamp Stamp, string Hash, long Size, long RecordedAt);

    /// <summary>
    /// A folder as the last capture that read it (or one of its folders) left it: its own stamp (the inode it was)
    /// and mode, its tree, its files and folders, what it skipped, and totals over everything below it.
    /// </summary>
    internal sealed class FolderState
    {
        public FileStamp Stamp { get; set; }
        public uint Mode { get; set; }
        public string Hash { get; set; } = "";
        public Dictionary<string, IndexedFile> Files { get; set; } = new(StringComparer.Ordinal);
        /// <summary>Names of its folders, in ordinal order.</summary>
        public List<string> Folders { get; set; } = [];
        /// <summary>What it skipped (paths from the workspace root), in ordinal order.</summary>
        public List<SkippedEntry> Skipped { get; set; } = [];
        /// <summary>One of its files has more than one link: the folder is read at every capture.</summary>
        public bool MultiLinked { get; set; }
        public long OwnBytes { get; set; }
        public int TotalFiles { get; set; }
        public long TotalBytes { get; set; }
    }

    internal sealed class IndexEntry(string epoch)
    {
        public string Epoch { get; set; } = epoch;
        /// <summary>Every folder the capture knows, by path ("" the root).</summary>
        public Dictionary<string, FolderState> Folders { get; } = new(StringComparer.Ordinal);
        public WorkspaceChanges? Changes { get; set; }
        /// <summary>When the last capture that read every folder began (nanoseconds, <see cref="Now"/>).</summary>
        public long LastFullWalk { get; set; }
        public int FileCount { get; set; }
        public long LastUsed { get; set; }
        public long RacyNanoseconds { get; set; }
        /// <summary>No collection ran since this entry was recorded: its blobs and trees are all in the store.</summary>
        public bool Current { get; set; } = true;

        /// <summary>The content hash of <paramref name="file"/> if <paramref name="stamp"/> proves it unchanged, else null.</summary>
        public string? Known(IndexedFile? file, FileStamp stamp, string store)
        {
            if (file is null || file.Stamp != stamp
                || Math.Max(file.Stamp.Modified, file.Stamp.Changed) >= file.RecordedAt - RacyNanoseconds)
            {
                return null;
            }

            return Current || File.Exists(WorkspaceCheckpoints.BlobPath(store, file.Hash)) ? file.Hash : null;
        }
    }
}
