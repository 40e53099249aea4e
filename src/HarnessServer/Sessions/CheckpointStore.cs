using HarnessServer.Sandbox;
using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sessions;

/// <summary>
/// The coordination files of a tenant's checkpoint store, all beside its blobs and root-only:
/// <c>.lock</c> (<c>flock(2)</c>: captures and restores shared, a collection exclusive, across server processes),
/// <c>.epoch</c> (changed by every collection, so an index recorded before one checks its blobs still exist) and
/// <c>.pending/</c> (the root tree of each capture, recorded before the capture returns and kept for
/// <see cref="PendingLifetime"/>, so a collection never takes the blobs of a checkpoint whose row is still on its way
/// to the database).
/// </summary>
internal static class CheckpointStore
{
    /// <summary>Far longer than a capture's row takes to commit (the call's decision commit, a few milliseconds).</summary>
    internal static readonly TimeSpan PendingLifetime = TimeSpan.FromHours(1);

    private const uint BlobMode = 0b110_000_000; // 0600
    private const uint OwnerOnly = 0b111_000_000; // 0700

    /// <summary>Holds the store's lock until disposed; waits for a collection (or, exclusive, for captures) to end.</summary>
    public static IDisposable Lock(string store, bool exclusive)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("Workspace checkpoints need Linux.");
        }

        var path = Path.Combine(store, ".lock");
        var fd = Libc.Openat2(Libc.AT_FDCWD, path, Libc.O_RDWR | Libc.O_CREAT | Libc.O_CLOEXEC | Libc.O_NOFOLLOW, BlobMode, 0);
        if (fd < 0)
        {
            throw new IOException($"Cannot open the checkpoint store's lock: {Libc.Describe(-fd)}.");
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        int result;
        while ((result = Libc.Flock(handle, exclusive ? Libc.LOCK_EX : Libc.LOCK_SH)) == -Libc.EINTR)
        {
        }

        if (result < 0)
        {
            handle.Dispose();
            throw new IOException($"Cannot lock the checkpoint store: {Libc.Describe(-result)}.");
        }

        // Closing the descriptor releases the lock.
        return handle;
    }

    public static string Epoch(string store)
    {
        var path = Path.Combine(store, ".epoch");
        return File.Exists(path) ? File.ReadAllText(path) : "";
    }

    /// <summary>Starts a new epoch; the caller holds the lock exclusively.</summary>
    public static void NewEpoch(string store)
    {
        var temporary = Path.Combine(store, $".epoch-{Guid.NewGuid():N}");
        File.WriteAllText(temporary, Guid.NewGuid().ToString("N"));
        File.Move(temporary, Path.Combine(store, ".epoch"), overwrite: true);
    }

    /// <summary>
    /// Records a capture's root tree until its row has surely committed (or surely never will): one file per root,
    /// named by it and aged by its mtime, so repeated captures of an unchanged workspace touch one file instead of
    /// creating one each. The caller holds the lock shared.
    /// </summary>
    public static void Pending(string store, string rootHash, DateTimeOffset now)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("Workspace checkpoints need Linux.");
        }

        var path = Path.Combine(PendingFolder(store), rootHash);
        if (!File.Exists(path))
        {
            new FileStream(path, new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, UnixCreateMode = (UnixFileMode)BlobMode }).Dispose();
        }

        File.SetLastWriteTimeUtc(path, now.UtcDateTime);
    }

    /// <summary>The root trees of recent captures; removes the records older than <see cref="PendingLifetime"/>. Exclusive lock held.</summary>
    public static List<string> RecentRoots(string store, DateTimeOffset now)
    {
        var roots = new List<string>();
        foreach (var file in Directory.EnumerateFiles(PendingFolder(store)))
        {
            var name = Path.GetFileName(file);
            if (name.Length == 64 && name.All(char.IsAsciiHexDigitLower) && now - File.GetLastWriteTimeUtc(file) < PendingLifetime)
            {
                roots.Add(name);
            }
            else
            {
                File.Delete(file);
            }
        }

        return roots;
    }

    private static string PendingFolder(string store)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("Workspace checkpoints need Linux.");
        }

        var folder = Path.Combine(store, ".pending");
        if (!Directory.Exists(folder))
        {
            Directory.CreateDirectory(folder, (UnixFileMode)OwnerOnly);
        }

        return folder;
    }
}
