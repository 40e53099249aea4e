using System.Security.Cryptography;
using System.Text.Json;
using HarnessServer.Errors;
using HarnessServer.Sandbox;

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

/// <summary>A capture: the checkpoint's name (its root tree's hash), what it holds, and how many files had to be read.</summary>
internal sealed record CapturedCheckpoint(string Hash, CheckpointManifest Manifest, int FilesRead);

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
internal sealed class WorkspaceCheckpoints(WorkspaceRoot workspaces)
{
    private const uint OwnerOnly = 0b111_000_000; // 0700
    private const uint BlobMode = 0b110_000_000; // 0600
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>The last capture of each workspace, in this process.</summary>
    internal CheckpointIndex Index { get; } = new();

    /// <summary>Captures the workspace; returns the hash of its root tree (the checkpoint's name) and its manifest.</summary>
    public CapturedCheckpoint Capture(string tenant, Workspace workspace)
    {
        var store = StoreOf(tenant);
        using var guard = CheckpointStore.Lock(store, exclusive: false);
        var epoch = CheckpointStore.Epoch(store);
        var previous = Index.Take(workspace.FullPath, epoch);
        var next = new CheckpointIndex.IndexEntry(epoch, CheckpointIndex.Now(), previous);
        var root = new TreeNode { Path = "" };
        var folders = new Dictionary<string, TreeNode>(StringComparer.Ordinal) { [""] = root };
        var byParentPath = folders.GetAlternateLookup<ReadOnlySpan<char>>();
        var parent = root;
        var entries = new List<ManifestEntry>();
        var skipped = new List<SkippedEntry>();
        var read = 0;
        // The walk asks just before it yields the entry, so the answer is the one for the entry that follows.
        string? known = null;
        foreach (var entry in workspace.Walk(previous is null ? null : (path, stamp) => (known = previous.Known(path, stamp, store)) is null))
        {
            if (entry.Skipped is not null)
            {
                skipped.Add(new SkippedEntry(entry.Path, entry.Skipped));
                continue;
            }

            var slash = entry.Path.LastIndexOf('/');
            var parentPath = slash < 0 ? ReadOnlySpan<char>.Empty : entry.Path.AsSpan(0, slash);
            if (!parentPath.SequenceEqual(parent.Path))
            {
                parent = byParentPath[parentPath];
            }

            var name = entry.Path[(slash + 1)..];
            if (entry.Kind == "directory")
            {
                var folder = new TreeNode { Mode = entry.Mode, Path = entry.Path };
                folders[entry.Path] = folder;
                parent.Folders.Add((name, folder));
                entries.Add(new ManifestEntry(entry.Path, "directory", null, entry.Mode, 0));
                continue;
            }

            string hash;
            long size;
            if (entry.File is { } file)
            {
                using (file)
                {
                    (hash, size) = StoreBlob(store, file);
                }

                read++;
                parent.Changed = true;
            }
            else
            {
                // The walk opened nothing: the index knows this stamp's content, and its blob is in the store.
                (hash, size) = (known!, entry.Size);
            }

            next.Files[entry.Path] = new CheckpointIndex.IndexedFile(entry.Stamp, hash);
            parent.Files.Add(new TreeEntry(name, "file", hash, entry.Mode, size));
            entries.Add(new ManifestEntry(entry.Path, "file", hash, entry.Mode, size));
        }

        var rootHash = StoreTree(store, root, skipped, previous, next).Hash;
        CheckpointStore.Pending(store, rootHash, DateTimeOffset.UtcNow);
        Index.Put(workspace.FullPath, next);
        return new CapturedCheckpoint(rootHash, new CheckpointManifest(entries, skipped), read);
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
    // folder's tree and the trees above it; every unchanged folder's tree is shared with the checkpoint before, and a
    // folder whose files were all known, whose mode and number of entries are the same and whose folders are all
    // unchanged is the tree it was, so it is neither serialised nor hashed again.
    private static (string Hash, bool Reused) StoreTree(string store, TreeNode node, IReadOnlyList<SkippedEntry>? skipped,
        CheckpointIndex.IndexEntry? previous, CheckpointIndex.IndexEntry next)
    {
        var unchanged = !node.Changed;
        var folders = new TreeEntry[node.Folders.Count];
        for (var i = 0; i < folders.Length; i++)
        {
            var (name, folder) = node.Folders[i];
            var (hash, reused) = StoreTree(store, folder, null, previous, next);
            unchanged &= reused;
            folders[i] = new TreeEntry(name, "directory", hash, folder.Mode, 0);
        }

        var count = node.Files.Count + folders.Length;
        var skippedHere = skipped is { Count: > 0 } ? skipped : null;
        if (unchanged && previous?.Folder(node.Path) is { } known && known.Mode == node.Mode && known.Entries == count
            && known.Skipped.SequenceEqual(skippedHere ?? []))
        {
            next.Folders[node.Path] = known;
            return (known.Hash, true);
        }

        var entries = new List<TreeEntry>(count);
        entries.AddRange(node.Files);
        entries.AddRange(folders);
        entries.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        var bytes = JsonSerializer.SerializeToUtf8Bytes(new Tree(entries, skippedHere), Json);
        var treeHash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        WriteBlob(store, treeHash, bytes);
        next.Folders[node.Path] = new CheckpointIndex.IndexedFolder(node.Mode, count, treeHash, skippedHere ?? []);
        return (treeHash, false);
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

    private sealed class TreeNode
    {
        public required string Path { get; init; }
        public uint Mode { get; init; }
        /// <summary>A file of this folder (not of its folders) was read: its tree may differ.</summary>
        public bool Changed { get; set; }
        // The walk yields each folder's entries in ordinal order.
        public List<(string Name, TreeNode Node)> Folders { get; } = [];
        public List<TreeEntry> Files { get; } = [];
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
