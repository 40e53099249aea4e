using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using HarnessServer.Policies;
using HarnessServer.Tools;
using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

/// <summary>
/// One session's workspace, held open as a directory descriptor. Every file operation resolves its path with
/// <c>openat2(2)</c> relative to that descriptor, so the kernel — not a string check that a concurrent rename could
/// outrun — keeps it inside: <c>RESOLVE_BENEATH</c> refuses <c>..</c> and absolute escapes, <c>RESOLVE_NO_SYMLINKS</c>
/// refuses a symbolic link anywhere in the path, <c>RESOLVE_NO_MAGICLINKS</c> refuses <c>/proc</c> links and
/// <c>RESOLVE_NO_XDEV</c> refuses crossing into another mount. Symbolic links are refused even when they point inside
/// the workspace because policy globs match the lexical path: following <c>src/link -> ../secrets</c> would touch a
/// file other than the one the decision was about. <c>shell.exec</c> can still use links inside the sandbox.
/// Hard links: a file with more than one link is never written (<c>hard_link</c>), and is read only when it belongs
/// to the workspace's own sandbox user (the tenant's) — the server reads as root, and a link to a host file (or to
/// another tenant's) must not become a way to read it.
/// </summary>
internal sealed partial class Workspace : IDisposable
{
    /// <summary>Where the workspace is mounted inside the sandbox; absolute paths under it are accepted too.</summary>
    public const string MountPoint = "/workspace";

    internal const ulong Confined =
        Libc.RESOLVE_BENEATH | Libc.RESOLVE_NO_SYMLINKS | Libc.RESOLVE_NO_MAGICLINKS | Libc.RESOLVE_NO_XDEV;

    private const int MaxPathChars = 4096;
    private const int MaxLineChars = 500;
    private const int MaxDepth = 64;
    private const uint NewFileMode = 0b110_100_100; // 0644
    private const uint NewDirectoryMode = 0b111_101_101; // 0755
    private static readonly Encoding Utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);

    private readonly SafeFileHandle _root;
    private readonly SandboxOptions _options;
    private readonly bool _chownToOwner;
    private readonly uint _sandboxHostUid;

    internal Workspace(SafeFileHandle root, string fullPath, SandboxOptions options, SandboxUser owner, bool serverIsRoot)
    {
        _root = root;
        _options = options;
        _chownToOwner = serverIsRoot;
        // A server that is not root cannot give files away: they are its own, and so are the sandbox's (mapped to it).
        _sandboxHostUid = serverIsRoot ? (uint)owner.Uid : Libc.Geteuid();
        Owner = owner;
        FullPath = fullPath;
    }

    /// <summary>The tenant's sandbox user: sandboxes of this workspace run as it and, when the server is root, its files are its.</summary>
    public SandboxUser Owner { get; }

    /// <summary>The host path of the workspace folder, for <see cref="SandboxCommand.WorkspacePath"/>.</summary>
    public string FullPath { get; }

    /// <summary>
    /// The normal form of a tool's <c>path</c> relative to the workspace (<c>""</c> is the workspace itself), the same
    /// normal form the policy matched (<see cref="WorkspacePath"/> against <see cref="MountPoint"/>). Refuses NUL,
    /// backslashes, absolute paths outside <c>/workspace</c> and <c>..</c> escapes. The lexical check is the first
    /// wall; the kernel's confined resolution at open time is the one that holds against links and races.
    /// </summary>
    public string ResolveBeneath(string path)
    {
        if (path is null || path.Length > MaxPathChars)
        {
            throw new SandboxException(SandboxErrors.InvalidPath, $"A path must be 0-{MaxPathChars} characters.");
        }

        if (path.AsSpan().IndexOfAny('\0', '\\') >= 0)
        {
            throw new SandboxException(SandboxErrors.InvalidPath, "A path may not contain NUL or backslash characters.");
        }

        var buffer = path.Length <= 256 ? stackalloc char[path.Length] : new char[path.Length];
        var length = WorkspacePath.Normalize(path, MountPoint, buffer);
        if (length < 0)
        {
            throw new SandboxException(SandboxErrors.PathOutsideWorkspace, $"'{path}' is outside the workspace.");
        }

        return new string(buffer[..length]);
    }

    /// <summary><c>fs.read</c>: a regular file of at most <c>MaxReadBytes</c>.</summary>
    public FileContent Read(string path)
    {
        var relative = ResolveBeneath(path);
        if (relative.Length == 0)
        {
            throw new SandboxException(SandboxErrors.IsADirectory, "The workspace itself is a directory; name a file.");
        }

        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        using var file = Open(_root, relative, Libc.O_RDONLY | Libc.O_NONBLOCK | Libc.O_NOCTTY | Libc.O_CLOEXEC | Libc.O_NOFOLLOW, path);
        var stat = StatOpen(file, path);
        CheckReadable(stat, path);
        if ((long)stat.Size > _options.MaxReadBytes)
        {
            throw TooLargeToRead(path, (long)stat.Size);
        }

        var bytes = ReadAll(file, _options.MaxReadBytes) ?? throw TooLargeToRead(path, null);
        var content = OutputText.Of(bytes);
        return new FileContent(content.Value, bytes.Length, content.Base64 ? OutputText.Base64Encoding : null);
    }

    /// <summary>
    /// <c>fs.write</c>: creates missing parent folders one confined step at a time, writes a temporary file beside the
    /// target and renames it over the target, so a reader never sees half a file and the rename replaces the name
    /// (never writing through a link someone swapped in after the checks).
    /// </summary>
    public FileWritten Write(string path, string content)
    {
        ArgumentNullException.ThrowIfNull(content);
        var relative = ResolveBeneath(path);
        if (relative.Length == 0)
        {
            throw new SandboxException(SandboxErrors.IsADirectory, "The workspace itself is a directory; name a file.");
        }

        var size = Utf8.GetByteCount(content);
        if (size > _options.MaxFileBytes)
        {
            throw new SandboxException(SandboxErrors.TooLarge,
                $"The content is {size} bytes; files written in the workspace are limited to {_options.MaxFileBytes} bytes.");
        }

        var slash = relative.LastIndexOf('/');
        var name = relative[(slash + 1)..];
        using var directory = OpenOrCreateDirectories(slash < 0 ? "" : relative[..slash], path);

        var mode = NewFileMode;
        var existing = Libc.StatNoFollow(directory, name, out var stat);
        if (existing == 0)
        {
            mode = CheckReplaceable(stat, path);
        }
        else if (existing != -Libc.ENOENT)
        {
            throw Refusal(-existing, path);
        }

        var temporary = $".harness-write-{Guid.NewGuid():N}.tmp";
        var fd = Libc.Openat2(directory, temporary, Libc.O_WRONLY | Libc.O_CREAT | Libc.O_EXCL | Libc.O_NOFOLLOW | Libc.O_CLOEXEC,
            0b110_000_000, Confined);
        if (fd < 0)
        {
            throw Refusal(-fd, path);
        }

        try
        {
            using (var file = new SafeFileHandle(fd, ownsHandle: true))
            {
                RandomAccess.Write(file, Utf8.GetBytes(content), 0);
                var chown = _chownToOwner ? Libc.Fchown(file, (uint)Owner.Uid, (uint)Owner.Gid) : 0;
                var chmod = Libc.Fchmod(file, mode);
                if (chown < 0 || chmod < 0)
                {
                    throw Refusal(-Math.Min(chown, chmod), path);
                }
            }

            var renamed = Libc.Renameat(directory, temporary, name);
            if (renamed < 0)
            {
                throw Refusal(-renamed, path);
            }
        }
        catch
        {
            Libc.Unlinkat(directory, temporary);
            throw;
        }

        return new FileWritten(relative, size);
    }

    /// <summary><c>fs.list</c>: the entries of one folder, links described rather than followed.</summary>
    public DirectoryListing List(string path)
    {
        var relative = ResolveBeneath(path);
        using var directory = OpenDirectory(relative, path);
        var entries = new List<DirectoryEntry>();
        var truncated = false;
        foreach (var (name, _) in ReadEntries(directory))
        {
            if (entries.Count == _options.MaxListEntries)
            {
                truncated = true;
                break;
            }

            // An entry removed since readdir is simply not listed.
            if (Libc.StatNoFollow(directory, name, out var stat) == 0)
            {
                entries.Add(new DirectoryEntry(name, KindOf(stat.Type), stat.Type == Libc.S_IFDIR ? 0 : (long)stat.Size));
            }
        }

        entries.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return new DirectoryListing(entries, truncated);
    }

    /// <summary>
    /// <c>fs.search</c>: lines matching <paramref name="pattern"/> in the text files under <paramref name="path"/>
    /// (a folder or one file; the whole workspace by default). The pattern is a .NET regular expression run by the
    /// non-backtracking engine (linear time, so no pattern can hang the server); a pattern that engine does not accept
    /// is searched as plain text. Links are not followed, binary files (a NUL in the first 8 KiB) and files over
    /// <c>MaxReadBytes</c> are skipped, and the search stops at <c>MaxSearchMatches</c> or <c>SearchTimeoutSeconds</c>.
    /// </summary>
    public SearchResults Search(string pattern, string? path, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrEmpty(pattern))
        {
            throw new SandboxException(SandboxErrors.InvalidArgument, "The search pattern is empty.");
        }

        var relative = ResolveBeneath(path ?? "");
        var search = new SearchRun(Matcher(pattern), _options, Stopwatch.StartNew(), cancellationToken);
        using var start = Open(_root, relative.Length == 0 ? "." : relative,
            Libc.O_RDONLY | Libc.O_NONBLOCK | Libc.O_NOCTTY | Libc.O_CLOEXEC | Libc.O_NOFOLLOW, path ?? "");
        var stat = StatOpen(start, path ?? "");
        if (stat.Type == Libc.S_IFDIR)
        {
            SearchDirectory(start, relative, 0, search);
        }
        else
        {
            CheckReadable(stat, path ?? "");
            SearchFile(start, relative, search);
        }

        return new SearchResults(search.Matches, search.Truncated);
    }

    public void Dispose() => _root.Dispose();

    private void SearchDirectory(SafeFileHandle directory, string prefix, int depth, SearchRun search)
    {
        var entries = ReadEntries(directory);
        entries.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        foreach (var (name, type) in entries)
        {
            if (search.ShouldStop())
            {
                return;
            }

            var kind = type;
            if (kind == Libc.DT_UNKNOWN)
            {
                kind = Libc.StatNoFollow(directory, name, out var stat) != 0 ? Libc.DT_UNKNOWN
                    : stat.Type switch { Libc.S_IFDIR => Libc.DT_DIR, Libc.S_IFREG => Libc.DT_REG, _ => Libc.DT_UNKNOWN };
            }

            var relative = prefix.Length == 0 ? name : $"{prefix}/{name}";
            if (kind == Libc.DT_DIR && depth < MaxDepth)
            {
                var fd = Libc.Openat2(directory, name, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Confined);
                if (fd >= 0)
                {
                    using var child = new SafeFileHandle(fd, ownsHandle: true);
                    SearchDirectory(child, relative, depth + 1, search);
                }
            }
            else if (kind == Libc.DT_REG)
            {
                var fd = Libc.Openat2(directory, name,
                    Libc.O_RDONLY | Libc.O_NONBLOCK | Libc.O_NOCTTY | Libc.O_CLOEXEC | Libc.O_NOFOLLOW, 0, Confined);
                if (fd >= 0)
                {
                    using var file = new SafeFileHandle(fd, ownsHandle: true);
                    // The entry may have been swapped since readdir: decide on what was actually opened.
                    if (Libc.Stat(file, out var stat) == 0 && stat.Type == Libc.S_IFREG && MayRead(stat))
                    {
                        SearchFile(file, relative, search);
                    }
                }
            }
        }
    }

    private void SearchFile(SafeFileHandle file, string relative, SearchRun search)
    {
        var bytes = ReadAll(file, _options.MaxReadBytes);
        // A NUL anywhere makes the file binary: its "lines" would put a NUL into a result, which jsonb cannot hold.
        if (bytes is null || bytes.AsSpan().Contains((byte)0))
        {
            return;
        }

        var text = Utf8.GetString(bytes);
        var line = 0;
        foreach (var range in text.AsSpan().Split('\n'))
        {
            line++;
            if (search.ShouldStop())
            {
                return;
            }

            var content = text.AsSpan(range.Start.Value, range.End.Value - range.Start.Value).TrimEnd('\r');
            if (search.IsMatch(content))
            {
                var shown = content.Length > MaxLineChars ? content[..MaxLineChars] : content;
                search.Matches.Add(new SearchMatch(relative, line, shown.ToString()));
            }
        }
    }

    private static Func<ReadOnlySpan<char>, bool> Matcher(string pattern)
    {
        try
        {
            var regex = new Regex(pattern, RegexOptions.NonBacktracking | RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            return line => regex.IsMatch(line);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            return line => line.Contains(pattern, StringComparison.Ordinal);
        }
    }

    private SafeFileHandle OpenDirectory(string relative, string shown)
    {
        var fd = Libc.Openat2(_root, relative.Length == 0 ? "." : relative, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Confined);
        return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw Refusal(-fd, shown);
    }

    private SafeFileHandle OpenOrCreateDirectories(string relative, string shown)
    {
        var fd = Libc.Openat2(_root, relative.Length == 0 ? "." : relative, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Confined);
        if (fd >= 0)
        {
            return new SafeFileHandle(fd, ownsHandle: true);
        }

        if (fd != -Libc.ENOENT)
        {
            throw Refusal(-fd, shown);
        }

        // One segment at a time, each opened confined relative to the previous one: a segment that someone turns
        // into a link between mkdirat and the open is refused, never followed.
        var current = OpenDirectory("", shown);
        foreach (var segment in relative.Split('/'))
        {
            using var parent = current;
            var made = Libc.Mkdirat(parent, segment, NewDirectoryMode);
            if (made < 0 && made != -Libc.EEXIST)
            {
                throw Refusal(-made, shown);
            }

            var next = Libc.Openat2(parent, segment, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Confined);
            if (next < 0)
            {
                throw Refusal(-next, shown);
            }

            current = new SafeFileHandle(next, ownsHandle: true);
            if (made == 0 && _chownToOwner && Libc.Fchown(current, (uint)Owner.Uid, (uint)Owner.Gid) is var chown and < 0)
            {
                current.Dispose();
                throw Refusal(-chown, shown);
            }
        }

        return current;
    }

    private static SafeFileHandle Open(SafeFileHandle directory, string relative, ulong flags, string shown)
    {
        for (var attempt = 0; ; attempt++)
        {
            var fd = Libc.Openat2(directory, relative, flags, 0, Confined);
            if (fd >= 0)
            {
                return new SafeFileHandle(fd, ownsHandle: true);
            }

            // EAGAIN: a rename elsewhere raced the confined lookup, which the kernel refuses rather than risk an escape.
            if ((fd != -Libc.EAGAIN && fd != -Libc.EINTR) || attempt == 8)
            {
                throw Refusal(-fd, shown);
            }
        }
    }

    private static Libc.Statx StatOpen(SafeFileHandle file, string shown)
    {
        var result = Libc.Stat(file, out var stat);
        return result == 0 ? stat : throw Refusal(-result, shown);
    }

    private void CheckReadable(Libc.Statx stat, string shown)
    {
        if (stat.Type == Libc.S_IFDIR)
        {
            throw new SandboxException(SandboxErrors.IsADirectory, $"'{shown}' is a directory.");
        }

        if (stat.Type != Libc.S_IFREG)
        {
            throw new SandboxException(SandboxErrors.NotAFile, $"'{shown}' is not a regular file (a FIFO, socket or device).");
        }

        if (!MayRead(stat))
        {
            throw new SandboxException(SandboxErrors.HardLink,
                $"'{shown}' has {stat.Nlink} hard links and does not belong to the workspace's sandbox user; it may be a host file linked in.");
        }
    }

    private bool MayRead(Libc.Statx stat) => stat.Nlink <= 1 || stat.Uid == _sandboxHostUid;

    private static uint CheckReplaceable(Libc.Statx stat, string shown)
    {
        switch (stat.Type)
        {
            case Libc.S_IFDIR:
                throw new SandboxException(SandboxErrors.IsADirectory, $"'{shown}' is a directory.");
            case Libc.S_IFLNK:
                throw new SandboxException(SandboxErrors.SymlinkInPath, $"'{shown}' is a symbolic link; the file tools do not follow or replace links.");
            case not Libc.S_IFREG:
                throw new SandboxException(SandboxErrors.NotAFile, $"'{shown}' is not a regular file (a FIFO, socket or device).");
        }

        if (stat.Nlink > 1)
        {
            throw new SandboxException(SandboxErrors.HardLink, $"'{shown}' has {stat.Nlink} hard links; it is not written, so no other name's file changes.");
        }

        // Keep the file's permission bits (an executable script stays executable), never set-id bits.
        return (uint)stat.Mode & 0b111_111_111;
    }

    /// <summary>Reads the whole file, or returns null when it holds more than <paramref name="limit"/> bytes.</summary>
    private static byte[]? ReadAll(SafeFileHandle file, int limit)
    {
        var buffer = new byte[Math.Min(limit + 1, 64 * 1024)];
        var total = 0;
        while (true)
        {
            if (total == buffer.Length)
            {
                if (buffer.Length > limit)
                {
                    return null;
                }

                Array.Resize(ref buffer, (int)Math.Min((long)buffer.Length * 2, limit + 1L));
            }

            var read = RandomAccess.Read(file, buffer.AsSpan(total), total);
            if (read == 0)
            {
                return buffer[..total];
            }

            total += read;
        }
    }

    private static List<(string Name, byte Type)> ReadEntries(SafeFileHandle directory)
    {
        // fdopendir takes the descriptor over (closedir closes it), so hand it a fresh one of the same directory.
        var fd = Libc.Openat2(directory, ".", Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0, Confined);
        if (fd < 0)
        {
            throw Refusal(-fd, ".");
        }

        var stream = Libc.Fdopendir(fd);
        if (stream == 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            new SafeFileHandle(fd, ownsHandle: true).Dispose();
            throw Refusal(errno, ".");
        }

        var entries = new List<(string, byte)>();
        try
        {
            nint entry;
            while ((entry = Libc.Readdir64(stream)) != 0)
            {
                // struct dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name.
                var type = Marshal.ReadByte(entry, 18);
                var name = Marshal.PtrToStringUTF8(entry + 19)!;
                if (name is not ("." or ".."))
                {
                    entries.Add((name, type));
                }
            }
        }
        finally
        {
            Libc.Closedir(stream);
        }

        return entries;
    }

    private static string KindOf(ushort type) => type switch
    {
        Libc.S_IFREG => "file",
        Libc.S_IFDIR => "directory",
        Libc.S_IFLNK => "symlink",
        _ => "other",
    };

    private SandboxException TooLargeToRead(string shown, long? size) => new(SandboxErrors.TooLarge,
        $"'{shown}' is {(size is { } s ? $"{s} bytes" : "growing past the limit")}; fs.read returns at most {_options.MaxReadBytes} bytes.");

    private static SandboxException Refusal(int errno, string shown) => errno switch
    {
        Libc.ENOENT => new(SandboxErrors.NotFound, $"'{shown}' does not exist in the workspace."),
        Libc.EXDEV => new(SandboxErrors.PathOutsideWorkspace, $"'{shown}' resolves outside the workspace."),
        Libc.ELOOP => new(SandboxErrors.SymlinkInPath, $"'{shown}' goes through a symbolic link; the file tools do not follow links."),
        Libc.ENOTDIR => new(SandboxErrors.NotADirectory, $"A part of '{shown}' is not a directory."),
        Libc.EISDIR => new(SandboxErrors.IsADirectory, $"'{shown}' is a directory."),
        Libc.ENXIO => new(SandboxErrors.NotAFile, $"'{shown}' is not a regular file."),
        Libc.EACCES or Libc.EPERM => new(SandboxErrors.PermissionDenied, $"'{shown}': {Libc.Describe(errno)}."),
        Libc.ENAMETOOLONG => new(SandboxErrors.InvalidPath, $"'{shown}' is too long."),
        Libc.EAGAIN or Libc.EINTR => new(SandboxErrors.Busy, $"'{shown}' kept changing during the lookup; try again."),
        Libc.ENOSYS => new(SandboxErrors.SandboxUnavailable, "The kernel has no openat2(2) (Linux 5.6 or later is required)."),
        _ => new(SandboxErrors.IoError, $"'{shown}': {Libc.Describe(errno)}."),
    };

    private sealed class SearchRun(Func<ReadOnlySpan<char>, bool> matcher, SandboxOptions options, Stopwatch clock, CancellationToken cancellationToken)
    {
        public List<SearchMatch> Matches { get; } = [];
        public bool Truncated { get; private set; }

        public bool ShouldStop()
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (Matches.Count >= options.MaxSearchMatches || clock.Elapsed.TotalSeconds >= options.SearchTimeoutSeconds)
            {
                Truncated = true;
            }

            return Truncated;
        }

        public bool IsMatch(ReadOnlySpan<char> line)
        {
            try
            {
                return matcher(line);
            }
            catch (RegexMatchTimeoutException)
            {
                Truncated = true;
                return false;
            }
        }
    }
}
