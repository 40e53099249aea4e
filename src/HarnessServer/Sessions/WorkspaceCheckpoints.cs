using System.Security.Cryptography;
using System.Text.Json;
using HarnessServer.Errors;
using HarnessServer.Sandbox;
using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sessions;

/// <summary>One captured path of a checkpoint: a folder, or a file by the SHA-256 of its content.</summary>
internal sealed record ManifestEntry(string Path, string Kind, string? Hash, uint Mode, long Size);

/// <summary>A path the walk met but did not capture (a link, a device, an unreadable hard link), and why.</summary>
internal sealed record SkippedEntry(string Path, string Reason);

/// <summary>Everything a workspace held at one moment, flattened from its trees.</summary>
internal sealed record CheckpointManifest(IReadOnlyList<ManifestEntry> Entries, IReadOnlyList<SkippedEntry> Skipped)
{
    public long Bytes => Entries.Sum(e => e.Size);
    public int Files => Entries.Count(e => e.Kind == "file");
}

/// <summary>What a collection kept (blobs reachable from a root) and removed.</summary>
internal sealed record CollectedBlobs(int Kept, int Deleted, long Bytes);

/// <summary>
/// A capture: the checkpoint's name (its root tree's hash), how many files and bytes it holds, what it skipped, and
/// what it cost: the files it had to read, the folders it listed, and whether it listed every folder.
/// </summary>
internal sealed record CapturedCheckpoint(string Hash, int Files, long Bytes, IReadOnlyList<SkippedEntry> Skipped, int FilesRead, int FoldersRead, bool FullWalk);

/// <summary>
/// Content-addressed, deduplicated snapshots of session workspaces. Blobs live under
/// <c>&lt;WorkspacesPath&gt;/.objects/&lt;tenant&gt;/&lt;aa&gt;/&lt;sha256&gt;</c> (root-only, outside every sandbox mount), so a file
/// that did not change since the last checkpoint costs no storage, and a checkpoint's own cost is the trees of the
/// folders that changed. Files are read through <see cref="Workspace.Walk"/>, which never follows links. A restore builds the
/// tree in a folder the sandbox cannot reach and swaps it in with two renames, so it never writes through anything
/// the sandbox controls, and it leaves exactly the manifest's files (what is not in it is gone).
/// A file whose stamp (device, inode, size, mtime, ctime, mode) is the one recorded at the workspace's last capture
/// in this process is not read again (<see cref="CheckpointIndex"/>); the sandbox user can set mtime but not ctime,
/// so the shortcut trusts nothing the sandbox controls. Captures and restores hold the tenant store's lock shared,
/// the collector (<see cref="CheckpointCollector"/>) holds it exclusively.
/// </summary>
internal sealed class WorkspaceCheckpoints(WorkspaceRoot workspaces) : IDisposable
{
    private const uint OwnerOnly = 0b111_000_000; // 0700
    private const uint BlobMode = 0b110_000_000; // 0600
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>The last capture of each workspace, in this process.</summary>
    internal CheckpointIndex Index { get; } = new();

    public void Dispose() => Index.Dispose();

    /// <summary>
    /// Captures the workspace; returns the hash of its root tree (the checkpoint's name) and its totals. Only the
    /// folders the index says changed are read (<see cref="CheckpointIndex"/>); the others keep their trees.
    /// </summary>
    public CapturedCheckpoint Capture(string tenant, Workspace workspace)
    {
        var store = StoreOf(tenant);
        using var guard = CheckpointStore.Lock(store, exclusive: false);
        var epoch = CheckpointStore.Epoch(store);
        var now = CheckpointIndex.Now();
        var entry = Index.Take(workspace.FullPath, epoch);
        var changed = entry is null ? null : Index.Changed(entry, now);
        try
        {
            var run = Run(store, workspace, ref entry, epoch, now, changed);
            if (run is { Full: false, NewMultiLink: true })
            {
                // A file got a second name: where the other one is, only reading every folder can tell.
                run = Run(store, workspace, ref entry, epoch, now, changed: null);
            }

            var root = entry.Folders[""];
            CheckpointStore.Pending(store, root.Hash, DateTimeOffset.UtcNow);
            entry.FileCount = root.TotalFiles;
            var skipped = Skipped(entry);
            Index.Put(workspace.FullPath, entry);
            return new CapturedCheckpoint(root.Hash, root.TotalFiles, root.TotalBytes, skipped, run.FilesRead, run.FoldersRead, run.Full);
        }
        catch
        {
            // What the entry says may be half updated: the next capture reads everything.
            if (entry is not null)
            {
                CheckpointIndex.Abandon(entry);
            }

            throw;
        }
    }

    private CaptureRun Run(string store, Workspace workspace, [System.Diagnostics.CodeAnalysis.NotNull] ref CheckpointIndex.IndexEntry? entry,
        string epoch, long now, HashSet<string>? changed)
    {
        entry ??= new CheckpointIndex.IndexEntry(epoch);
        var full = changed is null;
        if (full)
        {
            Index.BeginTracking(entry, now);
        }

        // Epoch after BeginTracking's read of it: a full run records against the store as it is now.
        entry.Epoch = epoch;
        var run = new CaptureRun(store, workspace, entry, now, changed);
        using var root = workspace.OpenSnapshotRoot();
        var stamp = Workspace.StampOf(root) ?? throw new IOException("Cannot stat the workspace's root folder.");
        var known = entry.Folders.GetValueOrDefault("");
        if (known is not null && !known.Stamp.SameInode(stamp))
        {
            // Another folder at the workspace's path (restored, or replaced behind the harness's back).
            entry.Folders.Clear();
            known = null;
        }

        if (!full)
        {
            run.Touched = Touched(entry, changed!);
        }

        CaptureFolder(run, "", root, stamp, known, read: full || known is null || changed!.Contains("") || known.MultiLinked, depth: 0);
        return run;
    }

    // The folders a capture must visit: the changed ones, those with a multiply-linked file, and every folder above them.
    private static HashSet<string> Touched(CheckpointIndex.IndexEntry entry, HashSet<string> changed)
    {
        var touched = new HashSet<string>(StringComparer.Ordinal) { "" };
        foreach (var path in changed.Concat(entry.Folders.Where(f => f.Value.MultiLinked).Select(f => f.Key)))
        {
            for (var at = path; touched.Add(at);)
            {
                var slash = at.LastIndexOf('/');
                at = slash < 0 ? "" : at[..slash];
            }
        }

        return touched;
    }

    private static string PathOf(string prefix, string name) => prefix.Length == 0 ? name : $"{prefix}/{name}";

    // Captures one folder: reads its entries when it changed (or nothing is known of it), else keeps what is known of
    // them and only visits its folders that lead to a change. Leaves the folder's new state in the index entry.
    private CheckpointIndex.FolderState CaptureFolder(CaptureRun run, string path, SafeFileHandle handle, FileStamp stamp,
        CheckpointIndex.FolderState? known, bool read, int depth)
    {
        var entry = run.Entry;
        if (!read)
        {
            var state = known!;
            var changedBelow = false;
            foreach (var name in state.Folders)
            {
                var childPath = PathOf(path, name);
                if (!run.Touched!.Contains(childPath))
                {
                    continue;
                }

                var child = entry.Folders[childPath];
                using var childHandle = Workspace.OpenSnapshotFolder(handle, name, out var childStamp);
                if (childHandle is null || !child.Stamp.SameInode(childStamp) || child.Mode != (childStamp.Mode & 0b111_111_111))
                {
                    // Not what the index knows, with no event to say so (a change the notification cannot report
                    // never gets here, but be exact): read this folder after all.
                    return CaptureFolder(run, path, handle, stamp, known, read: true, depth);
                }

                var before = child.Hash;
                var after = CaptureFolder(run, childPath, childHandle, childStamp, child,
                    read: run.Changed!.Contains(childPath) || child.MultiLinked, depth + 1);
                changedBelow |= after.Hash != before;
            }

            Total(entry, path, state);
            if (changedBelow || path.Length == 0)
            {
                state.Hash = StoreTree(run.Store, entry, path, state, path.Length == 0 ? Skipped(entry) : null);
            }

            return state;
        }

        run.FoldersRead++;
        // Watched before it is read: a change after this is reported, one before it is in what is read below.
        entry.Changes?.Watch(entry, handle, path);
        var next = new CheckpointIndex.FolderState { Stamp = stamp, Mode = stamp.Mode & 0b111_111_111 };
        var knownFiles = known?.Files;
        var knownFolders = known is null ? null : new HashSet<string>(known.Folders, StringComparer.Ordinal);
        var slash = path.Length == 0 ? 0 : path.Length + 1;
        string? knownHash = null;
        foreach (var item in run.Workspace.ReadFolder(handle, path, depth,
            knownFiles is null ? null : (relative, fileStamp) => (knownHash = entry.Known(knownFiles.GetValueOrDefault(relative[slash..]), fileStamp, run.Store)) is null))
        {
            var name = item.Path[slash..];
            if (item.Skipped is not null)
            {
                next.Skipped.Add(new SkippedEntry(item.Path, item.Skipped));
                continue;
            }

            if (item.Kind == "directory")
            {
                using var childHandle = item.File!;
                var child = knownFolders?.Remove(name) == true ? entry.Folders.GetValueOrDefault(item.Path) : null;
                if (child is not null && !child.Stamp.SameInode(item.Stamp))
                {
                    Forget(entry, item.Path);
                    child = null;
                }

                if (child is null || run.Full || run.Changed!.Contains(item.Path) || child.MultiLinked || run.Touched!.Contains(item.Path))
                {
                    child = CaptureFolder(run, item.Path, childHandle, item.Stamp, child,
                        read: child is null || run.Full || run.Changed!.Contains(item.Path) || child.MultiLinked, depth + 1);
                }
                else
                {
                    // Untouched below: only its mode (part of this folder's tree) can differ.
                    child.Mode = item.Mode;
                    child.Stamp = item.Stamp;
                }

                next.Folders.Add(name);
                continue;
            }

            string hash;
            long size;
            if (item.File is { } file)
            {
                using (file)
                {
                    (hash, size) = StoreBlob(run.Store, file);
                }

                run.FilesRead++;
            }
            else
            {
                // Nothing was opened: the index knows this stamp's content, and its blob is in the store.
                (hash, size) = (knownHash!, knownFiles![name].Size);
            }

            if (item.Stamp.Links > 1)
            {
                next.MultiLinked = true;
                if (!run.Full && knownFiles?.GetValueOrDefault(name) is not { Stamp.Links: > 1 })
                {
                    run.NewMultiLink = true;
                }
            }

            next.Files[name] = new CheckpointIndex.IndexedFile(item.Stamp, hash, size, run.Now);
            next.OwnBytes += size;
        }

        foreach (var gone in knownFolders ?? [])
        {
            Forget(entry, PathOf(path, gone));
        }

        entry.Folders[path] = next;
        Total(entry, path, next);
        next.Hash = StoreTree(run.Store, entry, path, next, path.Length == 0 ? Skipped(entry) : null);
        return next;
    }

    // A folder and everything below it leave the index.
    private static void Forget(CheckpointIndex.IndexEntry entry, string path)
    {
        if (entry.Folders.Remove(path, out var state))
        {
            foreach (var name in state.Folders)
            {
                Forget(entry, PathOf(path, name));
            }
        }
    }

    private static void Total(CheckpointIndex.IndexEntry entry, string path, CheckpointIndex.FolderState state)
    {
        var (files, bytes) = (state.Files.Count, state.OwnBytes);
        foreach (var name in state.Folders)
        {
            var child = entry.Folders[PathOf(path, name)];
            files += child.TotalFiles;
            bytes += child.TotalBytes;
        }

        (state.TotalFiles, state.TotalBytes) = (files, bytes);
    }

    // Every skipped entry of the workspace, in path order: the root tree carries them all.
    private static List<SkippedEntry> Skipped(CheckpointIndex.IndexEntry entry) =>
        entry.Folders.Values.SelectMany(f => f.Skipped).OrderBy(s => s.Path, StringComparer.Ordinal).ToList();

    private sealed class CaptureRun(string store, Workspace workspace, CheckpointIndex.IndexEntry entry, long now, HashSet<string>? changed)
    {
        public string Store { get; } = store;
        public Workspace Workspace { get; } = workspace;
        public CheckpointIndex.IndexEntry Entry { get; } = entry;
        public long Now { get; } = now;
        /// <summary>The folders reported changed; null when every folder is read.</summary>
        public HashSet<string>? Changed { get; } = changed;
        public bool Full => Changed is null;
        public HashSet<string>? Touched { get; set; }
        public int FilesRead { get; set; }
        public int FoldersRead { get; set; }
        public bool NewMultiLink { get; set; }
    }

    /// <summary>The flat manifest of a checkpoint, read back from its trees.</summary>
    public CheckpointManifest Load(string tenant, string treeHash)
    {
        var store = StoreOf(tenant);
        var entries = new List<ManifestEntry>();
        var root = ReadTree(store, treeHash);
        Flatten(store, root, "", entries, depth: 0);
        return new CheckpointManifest(entries, root.Skipped ?? []);
    }

    /// <summary>
    /// Makes the session's workspace exactly the checkpoint's, its files the tenant's sandbox <paramref name="user"/>'s.
    /// The caller holds the session's <see cref="Pipeline.SessionGate"/>, so no call runs in the workspace meanwhile.
    /// </summary>
    public void Restore(string tenant, string sessionId, string treeHash, SandboxUser user)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw Unsupported();
        }

        var store = StoreOf(tenant);
        using var guard = CheckpointStore.Lock(store, exclusive: false);
        CheckpointManifest manifest;
        try
        {
            manifest = Load(tenant, treeHash);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            // Pruned and collected between the caller's read of its row and this lock.
            throw Collected(treeHash);
        }

        using (var workspace = workspaces.Open(tenant, sessionId, user))
        {
            // Opening checks the tenant and session names; the paths below are then plain children of the root.
            // Every inode is new after the swap below: the workspace's index would only miss.
            Index.Forget(workspace.FullPath);
        }

        var tenantFolder = Path.Combine(workspaces.FullPath, tenant);
        var target = Path.Combine(tenantFolder, sessionId);
        // Names starting with a dot cannot collide with sessions (their ids start with a hex digit).
        var staging = Path.Combine(tenantFolder, $".restore-{Guid.NewGuid():N}");
        var retired = Path.Combine(tenantFolder, $".retired-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging, (UnixFileMode)OwnerOnly);
        try
        {
            foreach (var entry in manifest.Entries)
            {
                var path = Path.Combine(staging, SafeRelative(entry.Path));
                if (entry.Kind == "directory")
                {
                    Directory.CreateDirectory(path);
                    File.SetUnixFileMode(path, (UnixFileMode)(entry.Mode & 0b111_111_111));
                }
                else
                {
                    Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                    var blob = BlobPath(store, entry.Hash!);
                    if (!File.Exists(blob))
                    {
                        throw Collected(treeHash);
                    }

                    File.Copy(blob, path);
                    File.SetUnixFileMode(path, (UnixFileMode)(entry.Mode & 0b111_111_111));
                }
            }

            if (workspaces.IsRoot)
            {
                GiveTo(user, staging, directory: true);
                foreach (var entry in manifest.Entries)
                {
                    GiveTo(user, Path.Combine(staging, SafeRelative(entry.Path)), entry.Kind == "directory");
                }
            }

            Directory.Move(target, retired);
            Directory.Move(staging, target);
        }
        catch
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }

            throw;
        }

        // Recursive delete removes links themselves, never what they point to.
        Directory.Delete(retired, recursive: true);
    }

    /// <summary>The tenants that have a checkpoint store.</summary>
    public IEnumerable<string> Tenants()
    {
        var objects = Path.Combine(workspaces.FullPath, ".objects");
        return Directory.Exists(objects)
            ? Directory.EnumerateDirectories(objects).Select(Path.GetFileName).Where(t => t is { Length: > 0 } && t[0] != '.').Select(t => t!).Order(StringComparer.Ordinal).ToList()
            : [];
    }

    /// <summary>
    /// Deletes every blob of the tenant's store that no root reaches: the roots are the committed checkpoints'
    /// (read by <paramref name="committedRoots"/> while the store is locked, so no capture is between its walk and its
    /// pending record) and the captures recorded pending within <see cref="CheckpointStore.PendingLifetime"/> of
    /// <paramref name="now"/>. Leftover temporary files of a crashed capture older than that go too. A new epoch
    /// then makes every index recorded before check that its blobs still exist.
    /// </summary>
    public async Task<CollectedBlobs> CollectAsync(string tenant, DateTimeOffset now,
        Func<CancellationToken, Task<IReadOnlyCollection<string>>> committedRoots, CancellationToken cancellationToken)
    {
        var store = StoreOf(tenant);
        using var guard = CheckpointStore.Lock(store, exclusive: true);
        var roots = CheckpointStore.RecentRoots(store, now);
        roots.AddRange(await committedRoots(cancellationToken));
        var reachable = new HashSet<string>(StringComparer.Ordinal);
        foreach (var root in roots)
        {
            Mark(store, root, reachable, depth: 0);
        }

        var (deleted, bytes) = (0, 0L);
        foreach (var folder in Directory.EnumerateDirectories(store))
        {
            var name = Path.GetFileName(folder);
            if (name.Length != 2 || !name.All(char.IsAsciiHexDigitLower))
            {
                continue;
            }

            foreach (var blob in Directory.EnumerateFiles(folder))
            {
                if (!reachable.Contains(Path.GetFileName(blob)))
                {
                    bytes += new FileInfo(blob).Length;
                    File.Delete(blob);
                    deleted++;
                }
            }
        }

        foreach (var incoming in Directory.EnumerateFiles(store, ".incoming-*"))
        {
            if (now - File.GetLastWriteTimeUtc(incoming) > CheckpointStore.PendingLifetime)
            {
                File.Delete(incoming);
            }
        }

        CheckpointStore.NewEpoch(store);
        return new CollectedBlobs(reachable.Count, deleted, bytes);
    }

    // Trees shared between checkpoints are marked once: the walk is O(distinct trees), not O(checkpoints x files).
    private static void Mark(string store, string treeHash, HashSet<string> reachable, int depth)
    {
        if (depth > 256 || !reachable.Add(treeHash))
        {
            return;
        }

        Tree tree;
        try
        {
            tree = ReadTree(store, treeHash);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            // A root whose tree is gone (a capture that failed half way) reaches nothing more.
            return;
        }

        foreach (var entry in tree.Entries)
        {
            if (entry.Kind == "directory")
            {
                Mark(store, entry.Hash, reachable, depth + 1);
            }
            else
            {
                reachable.Add(entry.Hash);
            }
        }
    }

    // One folder is one tree blob (like git's trees): a checkpoint after a one-file change stores that file, its
    // folder's tree and the trees above it; every other folder's tree is shared with the checkpoint before, and is
    // neither visited nor serialised again.
    private static string StoreTree(string store, CheckpointIndex.IndexEntry entry, string path, CheckpointIndex.FolderState state,
        IReadOnlyList<SkippedEntry>? skipped)
    {
        var entries = new List<TreeEntry>(state.Files.Count + state.Folders.Count);
        foreach (var (name, file) in state.Files)
        {
            entries.Add(new TreeEntry(name, "file", file.Hash, file.Stamp.Mode & 0b111_111_111, file.Size));
        }

        foreach (var name in state.Folders)
        {
            var child = entry.Folders[PathOf(path, name)];
            entries.Add(new TreeEntry(name, "directory", child.Hash, child.Mode, 0));
        }

        entries.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        var bytes = JsonSerializer.SerializeToUtf8Bytes(new Tree(entries, skipped is { Count: > 0 } ? skipped : null), Json);
        var treeHash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        WriteBlob(store, treeHash, bytes);
        return treeHash;
    }

    private static Tree ReadTree(string store, string hash) =>
        JsonSerializer.Deserialize<Tree>(File.ReadAllBytes(BlobPath(store, hash)), Json)
            ?? throw new InvalidDataException($"Checkpoint tree {hash} is empty.");

    private static void Flatten(string store, Tree tree, string prefix, List<ManifestEntry> entries, int depth)
    {
        if (depth > 256)
        {
            throw new InvalidDataException("Checkpoint trees nest deeper than any workspace walk.");
        }

        foreach (var entry in tree.Entries)
        {
            var path = prefix.Length == 0 ? entry.Name : $"{prefix}/{entry.Name}";
            if (entry.Kind == "directory")
            {
                entries.Add(new ManifestEntry(path, "directory", null, entry.Mode, 0));
                Flatten(store, ReadTree(store, entry.Hash), path, entries, depth + 1);
            }
            else
            {
                entries.Add(new ManifestEntry(path, "file", entry.Hash, entry.Mode, entry.Size));
            }
        }
    }

    private sealed record TreeEntry(string Name, string Kind, string Hash, uint Mode, long Size);

    private sealed record Tree(IReadOnlyList<TreeEntry> Entries, IReadOnlyList<SkippedEntry>? Skipped);

    /// <summary>The bytes all blobs of a tenant take, for the store's size checks.</summary>
    public long StoredBytes(string tenant)
    {
        var store = StoreOf(tenant);
        return Directory.Exists(store)
            ? new DirectoryInfo(store).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length)
            : 0;
    }

    internal string StoreOf(string tenant)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw Unsupported();
        }

        // Validated by the same rule as workspace folders (WorkspaceRoot.Open), before any path is built from it.
        ArgumentException.ThrowIfNullOrWhiteSpace(tenant);
        if (tenant.StartsWith('.') || tenant.Contains('/') || tenant.Contains('\0'))
        {
            throw new ArgumentException($"'{tenant}' cannot name a tenant folder.", nameof(tenant));
        }

        var objects = Path.Combine(workspaces.FullPath, ".objects");
        if (!Directory.Exists(objects))
        {
            Directory.CreateDirectory(objects, (UnixFileMode)OwnerOnly);
        }

        var store = Path.Combine(objects, tenant);
        if (!Directory.Exists(store))
        {
            Directory.CreateDirectory(store, (UnixFileMode)OwnerOnly);
        }

        return store;
    }

    private static (string Hash, long Size) StoreBlob(string store, Microsoft.Win32.SafeHandles.SafeFileHandle file)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw Unsupported();
        }

        var hash = HashOf(file, out var size);
        if (File.Exists(BlobPath(store, hash)))
        {
            return (hash, size);
        }

        // Copy through a temporary name and hash what was copied: the blob's name is always its content's hash.
        var temporary = Path.Combine(store, $".incoming-{Guid.NewGuid():N}");
        using var incremental = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long copied = 0;
        using (var output = new FileStream(temporary, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = (UnixFileMode)BlobMode }))
        {
            var buffer = new byte[81920];
            int read;
            while ((read = RandomAccess.Read(file, buffer, copied)) > 0)
            {
                incremental.AppendData(buffer, 0, read);
                output.Write(buffer, 0, read);
                copied += read;
            }
        }

        var copiedHash = Convert.ToHexStringLower(incremental.GetHashAndReset());
        var path = BlobPath(store, copiedHash);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!, (UnixFileMode)OwnerOnly);
        if (File.Exists(path))
        {
            File.Delete(temporary);
        }
        else
        {
            File.Move(temporary, path);
        }

        return (copiedHash, copied);
    }

    private static string HashOf(Microsoft.Win32.SafeHandles.SafeFileHandle file, out long size)
    {
        using var incremental = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[81920];
        size = 0;
        int read;
        while ((read = RandomAccess.Read(file, buffer, size)) > 0)
        {
            incremental.AppendData(buffer, 0, read);
            size += read;
        }

        return Convert.ToHexStringLower(incremental.GetHashAndReset());
    }

    private static void WriteBlob(string store, string hash, byte[] bytes)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw Unsupported();
        }

        var path = BlobPath(store, hash);
        if (File.Exists(path))
        {
            return;
        }

        Directory.CreateDirectory(Path.GetDirectoryName(path)!, (UnixFileMode)OwnerOnly);
        var temporary = Path.Combine(store, $".incoming-{Guid.NewGuid():N}");
        using (var output = new FileStream(temporary, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = (UnixFileMode)BlobMode }))
        {
            output.Write(bytes);
        }

        File.Move(temporary, path, overwrite: true);
    }

    internal static string BlobPath(string store, string hash)
    {
        if (hash.Length != 64 || !hash.All(char.IsAsciiHexDigitLower))
        {
            throw new InvalidDataException($"'{hash}' is not a SHA-256 blob name.");
        }

        return Path.Combine(store, hash[..2], hash);
    }

    private static HarnessError Collected(string treeHash) => new(ErrorKind.NotFound, "checkpoint_not_found",
        $"Checkpoint {treeHash} is no longer kept: it was pruned and its content collected.");

    // Workspaces, their modes and owners are Linux's (bubblewrap, openat2); the platform analyzer wants the check in each method.
    private static PlatformNotSupportedException Unsupported() => new("Workspace checkpoints need Linux.");

    // A manifest is the server's own, but a path from it is still checked before it names anything on disk.
    private static string SafeRelative(string path)
    {
        var segments = path.Split('/');
        if (path.Length == 0 || path.Contains('\0') || path.Contains('\\')
            || segments.Any(s => s.Length == 0 || s is "." or ".."))
        {
            throw new InvalidDataException($"Checkpoint path '{path}' is not a plain relative path.");
        }

        return path;
    }

    private static void GiveTo(SandboxUser user, string path, bool directory)
    {
        var flags = Libc.O_RDONLY | Libc.O_CLOEXEC | Libc.O_NOFOLLOW | (directory ? Libc.O_DIRECTORY : 0);
        var fd = Libc.Openat2(Libc.AT_FDCWD, path, flags, 0, 0);
        if (fd < 0)
        {
            throw new IOException($"Cannot open '{path}' to hand it to the tenant's sandbox user: {Libc.Describe(-fd)}.");
        }

        using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        if (Libc.Fchown(handle, (uint)user.Uid, (uint)user.Gid) is var result and < 0)
        {
            throw new IOException($"Cannot hand '{path}' to the tenant's sandbox user: {Libc.Describe(-result)}.");
        }
    }
}
