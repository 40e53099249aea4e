using System.Collections.Concurrent;
using HarnessServer.Sandbox;

namespace HarnessServer.Sessions;

/// <summary>
/// What each workspace's last capture in this process saw, like git's index: per file its <see cref="FileStamp"/> and
/// content hash, per folder its tree. A file is read again unless its stamp is exactly the recorded one, and never
/// when the stamp is "racy": changed so shortly before the capture that recorded it that a later write in the same
/// timestamp tick would leave the stamp as it was (<see cref="RacyWindow"/>). A process without an index for a
/// workspace (restarted, or another server) reads every file once, so the index is only ever a shortcut.
/// Memory is bounded: past <see cref="MaxFiles"/> recorded files the least recently captured workspaces are dropped.
/// </summary>
internal sealed class CheckpointIndex
{
    /// <summary>About 150 bytes each: 1,000,000 files take ~150 MB at most.</summary>
    internal const int MaxFiles = 1_000_000;

    /// <summary>
    /// Longer than any Linux file system's timestamp granularity (ext4, xfs, btrfs and tmpfs keep nanoseconds but take
    /// them from a clock that ticks every few milliseconds; some keep whole seconds, FAT two), so a file whose
    /// ctime or mtime is at least this long before the recording capture began cannot be rewritten in the same tick.
    /// </summary>
    internal TimeSpan RacyWindow { get; set; } = TimeSpan.FromSeconds(2);

    private readonly ConcurrentDictionary<string, IndexEntry> _workspaces = new(StringComparer.Ordinal);
    private long _files;

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

        Interlocked.Add(ref _files, -entry.Files.Count);
        entry.Current = entry.Epoch == epoch;
        entry.RacyNanoseconds = RacyWindow.Ticks * 100;
        return entry;
    }

    public void Put(string workspace, IndexEntry entry)
    {
        entry.LastUsed = Environment.TickCount64;
        if (_workspaces.TryAdd(workspace, entry))
        {
            Interlocked.Add(ref _files, entry.Files.Count);
        }

        while (Interlocked.Read(ref _files) > MaxFiles && _workspaces.Count > 1)
        {
            var oldest = _workspaces.OrderBy(w => w.Value.LastUsed).First();
            if (_workspaces.TryRemove(oldest.Key, out var dropped))
            {
                Interlocked.Add(ref _files, -dropped.Files.Count);
            }
        }
    }

    public void Forget(string workspace)
    {
        if (_workspaces.TryRemove(workspace, out var entry))
        {
            Interlocked.Add(ref _files, -entry.Files.Count);
        }
    }

    internal sealed record IndexedFile(FileStamp Stamp, string Hash);

    internal sealed record IndexedFolder(uint Mode, int Entries, string Hash, IReadOnlyList<SkippedEntry> Skipped);

    internal sealed class IndexEntry(string epoch, long recordedAt, IndexEntry? sizedLike = null)
    {
        public string Epoch { get; } = epoch;
        /// <summary>When the capture that recorded this entry began, before it looked at any file.</summary>
        public long RecordedAt { get; } = recordedAt;
        public Dictionary<string, IndexedFile> Files { get; } = new(sizedLike?.Files.Count ?? 0, StringComparer.Ordinal);
        public Dictionary<string, IndexedFolder> Folders { get; } = new(sizedLike?.Folders.Count ?? 0, StringComparer.Ordinal);
        public long LastUsed { get; set; }
        public long RacyNanoseconds { get; set; }
        /// <summary>No collection ran since this entry was recorded: its blobs and trees are all in the store.</summary>
        public bool Current { get; set; } = true;

        /// <summary>The content hash of the file at <paramref name="path"/> if <paramref name="stamp"/> proves it unchanged, else null.</summary>
        public string? Known(string path, FileStamp stamp, string store)
        {
            if (!Files.TryGetValue(path, out var file) || file.Stamp != stamp
                || Math.Max(file.Stamp.Modified, file.Stamp.Changed) >= RecordedAt - RacyNanoseconds)
            {
                return null;
            }

            return Current || File.Exists(WorkspaceCheckpoints.BlobPath(store, file.Hash)) ? file.Hash : null;
        }

        /// <summary>The folder's tree at the last capture, when it can be reused as it is.</summary>
        public IndexedFolder? Folder(string path) => Current && Folders.TryGetValue(path, out var folder) ? folder : null;
    }
}
