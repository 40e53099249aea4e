using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

/// <summary>What a workspace holds: the sizes of its regular files, its entries of every kind, and whether it has folders too deep to count.</summary>
internal readonly record struct WorkspaceUsage(long Bytes, long Entries, bool TooDeep);

/// <summary>
/// The per-workspace disk quota (<c>WorkspaceMaxBytes</c>, <c>WorkspaceMaxFiles</c>) as a checked ceiling: no
/// filesystem quota is used, so a call can briefly go over; the pipeline measures the workspace before and after
/// every call that can write it (and samples it while a sandbox runs), stops the call, fails it and undoes it.
/// <para>
/// Measuring is incremental, like the checkpoint index: per folder, what it holds directly; and which folders the
/// kernel saw change since (<see cref="WorkspaceChanges"/>, one inotify instance for the whole quota). A measurement
/// reads only the folders that changed (one <c>statx</c> per entry, no file is opened), and folders it has not seen
/// in full. Whatever makes change notification miss something (no instance, a lost queue, the watch limit, too many
/// changed folders) makes the next measurement read every folder, so the shortcut never decides alone.
/// </para>
/// </summary>
internal sealed class WorkspaceQuota(IOptions<SandboxOptions> options, ILogger<WorkspaceQuota> logger) : IDisposable
{
    /// <summary>Folders the quota remembers across workspaces (about 100 bytes each) before it forgets the least recently measured.</summary>
    internal const int MaxFolders = 1_000_000;

    /// <summary>The shortest pause between two samples of a running call.</summary>
    internal static readonly TimeSpan SampleInterval = TimeSpan.FromMilliseconds(100);

    private readonly ConcurrentDictionary<string, Tracker> _workspaces = new(StringComparer.Ordinal);
    private readonly Lock _changesLock = new();
    private WorkspaceChanges? _changes;
    private bool _changesTried;
    private string? _changesProblem;

    private long _foldersRead;

    /// <summary>Folders read by every measurement so far: what the change tracking saves shows here.</summary>
    public long FoldersRead => Interlocked.Read(ref _foldersRead);

    public long MaxBytes => options.Value.WorkspaceMaxBytes;
    public long MaxEntries => options.Value.WorkspaceMaxFiles;

    /// <summary>What enforces the quota, in words (shown by <c>/readyz</c>).</summary>
    public string Description
    {
        get
        {
            lock (_changesLock)
            {
                var tracking = _changesProblem is { } problem ? $"every folder read at each measurement: {problem}" : "changed folders from inotify";
                return $"checked ceiling of {MaxBytes} bytes and {MaxEntries} entries per workspace, measured before and after each " +
                    $"writing call and sampled while it runs ({tracking}); no filesystem quota";
            }
        }
    }

    /// <summary>
    /// Why <paramref name="after"/> is over the quota where <paramref name="before"/> was not worse (a workspace already
    /// over it, for instance after the quota was lowered, may still shrink); null when it is within.
    /// </summary>
    public string? Excess(WorkspaceUsage before, WorkspaceUsage after)
    {
        var reasons = new List<string>();
        if (after.Bytes > MaxBytes && after.Bytes > before.Bytes)
        {
            reasons.Add($"{after.Bytes} bytes used of {MaxBytes} allowed");
        }

        if (after.Entries > MaxEntries && after.Entries > before.Entries)
        {
            reasons.Add($"{after.Entries} entries used of {MaxEntries} allowed");
        }

        if (after.TooDeep && !before.TooDeep)
        {
            reasons.Add("folders nested deeper than checkpoints and the quota look");
        }

        return reasons.Count == 0 ? null : string.Join(", ", reasons);
    }

    /// <summary>Measures <paramref name="workspace"/>, reading only what changed since its last measurement when that is known.</summary>
    public WorkspaceUsage Measure(Workspace workspace)
    {
        var tracker = _workspaces.GetOrAdd(workspace.FullPath, _ => new Tracker());
        WorkspaceUsage usage;
        lock (tracker)
        {
            var changes = Changes();
            var changed = tracker.Tracked && changes is not null ? changes.Drain(tracker) : null;
            if (changed is null || !Update(workspace, tracker, changes, changed))
            {
                ReadAll(workspace, tracker, changes);
            }

            tracker.LastUsed = Environment.TickCount64;
            usage = tracker.Usage();
        }

        Trim();
        return usage;
    }

    /// <summary>
    /// Samples <paramref name="workspace"/> until <paramref name="stop"/> is cancelled, and answers the first usage that
    /// is over the quota compared to <paramref name="before"/> (null when stopped first). A sample costs at most about
    /// a tenth of the time between samples.
    /// </summary>
    public async Task<WorkspaceUsage?> WatchAsync(Workspace workspace, WorkspaceUsage before, CancellationToken stop)
    {
        var pause = SampleInterval;
        while (true)
        {
            try
            {
                await Task.Delay(pause, stop);
            }
            catch (OperationCanceledException)
            {
                return null;
            }

            var started = Stopwatch.GetTimestamp();
            WorkspaceUsage usage;
            try
            {
                usage = Measure(workspace);
            }
            catch (Exception e) when (e is SandboxException or IOException)
            {
                // The measurement after the call still decides; only the early stop is lost.
                logger.LogWarning(e, "Sampling the usage of workspace {Workspace} failed; it is measured again when the call ends", workspace.FullPath);
                return null;
            }

            if (Excess(before, usage) is not null)
            {
                return usage;
            }

            pause = TimeSpan.FromTicks(Math.Max(SampleInterval.Ticks, Stopwatch.GetElapsedTime(started).Ticks * 10));
        }
    }

    /// <summary>Drops what is known of the workspace at <paramref name="fullPath"/> (it was replaced, as by a restore).</summary>
    public void Forget(string fullPath)
    {
        if (_workspaces.TryRemove(fullPath, out var tracker))
        {
            lock (tracker)
            {
                _changes?.End(tracker);
                tracker.Tracked = false;
            }
        }
    }

    public void Dispose()
    {
        lock (_changesLock)
        {
            _changes?.Dispose();
            _changes = null;
        }
    }

    private WorkspaceChanges? Changes()
    {
        lock (_changesLock)
        {
            if (!_changesTried)
            {
                _changesTried = true;
                _changes = WorkspaceChanges.TryCreate(out _changesProblem);
            }

            if (_changes?.TakeLimitReached() is { } limit)
            {
                _changesProblem = limit;
            }

            return _changes;
        }
    }

    private void ReadAll(Workspace workspace, Tracker tracker, WorkspaceChanges? changes)
    {
        changes?.Begin(tracker);
        tracker.Tracked = changes is not null;
        tracker.Folders.Clear();
        using var root = workspace.OpenFolderBeneath("", out var errno)
            ?? throw new SandboxException(SandboxErrors.IoError, $"The workspace cannot be opened to measure it: {Libc.Describe(errno)}");
        Read(tracker, changes, root, "", 0);
    }

    // Watched before it is read: a change after the watch is reported, one before it is in what is read.
    private void Read(Tracker tracker, WorkspaceChanges? changes, SafeFileHandle directory, string path, int depth)
    {
        changes?.Watch(tracker, directory, path);
        Interlocked.Increment(ref _foldersRead);
        var count = Workspace.CountFolder(directory, depth);
        var folder = new Folder
        {
            Stamp = Workspace.StampOf(directory) ?? default,
            Bytes = count.Bytes,
            Entries = count.Entries,
            TooDeep = count.TooDeep,
            Children = [.. count.Folders.Select(f => f.Name)],
        };
        tracker.Folders[path] = folder;
        if (count.TooDeep)
        {
            return;
        }

        foreach (var (name, _) in count.Folders)
        {
            using var child = Workspace.OpenSnapshotFolder(directory, name, out _);
            if (child is not null)
            {
                Read(tracker, changes, child, Child(path, name), depth + 1);
            }
        }
    }

    // Re-reads the changed folders, parents first; false when only reading everything can be trusted.
    private bool Update(Workspace workspace, Tracker tracker, WorkspaceChanges? changes, HashSet<string> changed)
    {
        foreach (var path in changed.OrderBy(Depth).ThenBy(p => p, StringComparer.Ordinal))
        {
            // Not known: below a folder that went, or read whole already by a parent's update.
            if (!tracker.Folders.TryGetValue(path, out var known))
            {
                continue;
            }

            using var directory = workspace.OpenFolderBeneath(path, out var errno);
            if (directory is null)
            {
                if (errno is not (Libc.ENOENT or Libc.ENOTDIR))
                {
                    return false;
                }

                // Gone: its parent saw the removal too.
                Remove(tracker, path);
                continue;
            }

            var stamp = Workspace.StampOf(directory);
            if (stamp is not { } now || !now.SameInode(known.Stamp))
            {
                // Another folder at the same path: nothing known below it holds.
                Remove(tracker, path);
                Read(tracker, changes, directory, path, Depth(path));
                continue;
            }

            Refresh(tracker, changes, directory, path, known);
        }

        return true;
    }

    private void Refresh(Tracker tracker, WorkspaceChanges? changes, SafeFileHandle directory, string path, Folder known)
    {
        var depth = Depth(path);
        Interlocked.Increment(ref _foldersRead);
        var count = Workspace.CountFolder(directory, depth);
        var names = count.Folders.Select(f => f.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var gone in known.Children.Where(c => !names.Contains(c)))
        {
            Remove(tracker, Child(path, gone));
        }

        known.Bytes = count.Bytes;
        known.Entries = count.Entries;
        known.TooDeep = count.TooDeep;
        known.Children = [.. names];
        if (count.TooDeep)
        {
            return;
        }

        foreach (var (name, stamp) in count.Folders)
        {
            var childPath = Child(path, name);
            if (tracker.Folders.TryGetValue(childPath, out var child) && child.Stamp.SameInode(stamp))
            {
                continue;
            }

            // New, moved here, or replaced: read whole (and watched).
            Remove(tracker, childPath);
            using var opened = Workspace.OpenSnapshotFolder(directory, name, out _);
            if (opened is not null)
            {
                Read(tracker, changes, opened, childPath, depth + 1);
            }
        }
    }

    private static void Remove(Tracker tracker, string path)
    {
        if (tracker.Folders.Remove(path, out var folder))
        {
            foreach (var child in folder.Children)
            {
                Remove(tracker, Child(path, child));
            }
        }
    }

    // Memory is bounded: past MaxFolders the least recently measured workspaces are forgotten (and read whole next time).
    private void Trim()
    {
        while (_workspaces.Values.Sum(t => t.Folders.Count) > MaxFolders && _workspaces.Count > 1)
        {
            var oldest = _workspaces.OrderBy(w => w.Value.LastUsed).First();
            Forget(oldest.Key);
        }
    }

    private static string Child(string path, string name) => path.Length == 0 ? name : $"{path}/{name}";

    private static int Depth(string path) => path.Length == 0 ? 0 : path.Count(c => c == '/') + 1;

    private sealed class Folder
    {
        public FileStamp Stamp { get; set; }
        public long Bytes { get; set; }
        public int Entries { get; set; }
        public bool TooDeep { get; set; }
        public List<string> Children { get; set; } = [];
    }

    private sealed class Tracker
    {
        /// <summary>Every folder of the workspace, by path ("" the root).</summary>
        public Dictionary<string, Folder> Folders { get; } = new(StringComparer.Ordinal);

        /// <summary>Change notification covers every folder in <see cref="Folders"/>.</summary>
        public bool Tracked { get; set; }

        public long LastUsed { get; set; }

        public WorkspaceUsage Usage()
        {
            long bytes = 0, entries = 0;
            var tooDeep = false;
            foreach (var folder in Folders.Values)
            {
                bytes += folder.Bytes;
                entries += folder.Entries;
                tooDeep |= folder.TooDeep;
            }

            return new WorkspaceUsage(bytes, entries, tooDeep);
        }
    }
}
