using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Sandbox;

/// <summary>
/// The few Linux calls the workspace needs that .NET does not expose: <c>openat2(2)</c> for confined path
/// resolution, and the <c>*at</c> family so that every later step works on a directory descriptor, not a path.
/// </summary>
internal static partial class Libc
{
    private const string Library = "libc";

    // openat2 has no glibc wrapper on Debian 12; 437 is its number on every architecture (the unified table).
    private const long SysOpenat2 = 437;

    public const int ENOENT = 2, EINTR = 4, ENXIO = 6, EAGAIN = 11, EACCES = 13, EEXIST = 17, EXDEV = 18,
        ENOTDIR = 20, EISDIR = 21, ENAMETOOLONG = 36, ENOSYS = 38, ELOOP = 40, EPERM = 1;

    public const ulong O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80, O_NOCTTY = 0x100,
        O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000, O_PATH = 0x200000;

    // These two differ between x86-64 and the Arm ports of Linux.
    public static readonly ulong O_DIRECTORY = IsArm ? 0x4000UL : 0x10000UL;
    public static readonly ulong O_NOFOLLOW = IsArm ? 0x8000UL : 0x20000UL;

    public const ulong RESOLVE_NO_XDEV = 0x01, RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04,
        RESOLVE_BENEATH = 0x08;

    public const int AT_SYMLINK_NOFOLLOW = 0x100, AT_REMOVEDIR = 0x200, AT_EMPTY_PATH = 0x1000;
    public const uint STATX_BASIC_STATS = 0x7ff;

    public const ushort S_IFMT = 0xF000, S_IFREG = 0x8000, S_IFDIR = 0x4000, S_IFLNK = 0xA000;
    public const byte DT_UNKNOWN = 0, DT_DIR = 4, DT_REG = 8, DT_LNK = 10;

    private static bool IsArm => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm;

    [StructLayout(LayoutKind.Sequential)]
    public struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    /// <summary><c>struct statx</c> (256 bytes, the same layout on every architecture); only the fields used here.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    public struct Statx
    {
        [FieldOffset(0)] public uint Mask;
        [FieldOffset(16)] public uint Nlink;
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(24)] public uint Gid;
        [FieldOffset(28)] public ushort Mode;
        [FieldOffset(32)] public ulong Inode;
        [FieldOffset(40)] public ulong Size;
        [FieldOffset(96)] public long ChangedSeconds;
        [FieldOffset(104)] public uint ChangedNanoseconds;
        [FieldOffset(112)] public long ModifiedSeconds;
        [FieldOffset(120)] public uint ModifiedNanoseconds;
        [FieldOffset(136)] public uint DeviceMajor;
        [FieldOffset(140)] public uint DeviceMinor;

        public readonly ushort Type => (ushort)(Mode & S_IFMT);
        public readonly long Changed => ChangedSeconds * 1_000_000_000 + ChangedNanoseconds;
        public readonly long Modified => ModifiedSeconds * 1_000_000_000 + ModifiedNanoseconds;
        public readonly ulong Device => ((ulong)DeviceMajor << 32) | DeviceMinor;
    }

    [LibraryImport(Library, EntryPoint = "syscall", SetLastError = true)]
    private static partial long SyscallOpenat2(long number, int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path,
        ref OpenHow how, nuint size);

    public const int AT_FDCWD = -100;

    /// <summary>Returns a descriptor, or -errno.</summary>
    public static int Openat2(SafeFileHandle dir, string path, ulong flags, ulong mode, ulong resolve)
    {
        var added = false;
        try
        {
            dir.DangerousAddRef(ref added);
            return Openat2((int)dir.DangerousGetHandle(), path, flags, mode, resolve);
        }
        finally
        {
            if (added)
            {
                dir.DangerousRelease();
            }
        }
    }

    /// <summary>Returns a descriptor, or -errno.</summary>
    public static int Openat2(int dirfd, string path, ulong flags, ulong mode, ulong resolve)
    {
        var how = new OpenHow { Flags = flags, Mode = mode, Resolve = resolve };
        var fd = SyscallOpenat2(SysOpenat2, dirfd, path, ref how, (nuint)Marshal.SizeOf<OpenHow>());
        return fd >= 0 ? (int)fd : -Marshal.GetLastPInvokeError();
    }

    [LibraryImport(Library, EntryPoint = "mkdirat", SetLastError = true)]
    private static partial int MkdiratCore(SafeFileHandle dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);

    public static int Mkdirat(SafeFileHandle dir, string name, uint mode) =>
        MkdiratCore(dir, name, mode) == 0 ? 0 : -Marshal.GetLastPInvokeError();

    [LibraryImport(Library, EntryPoint = "renameat", SetLastError = true)]
    private static partial int RenameatCore(SafeFileHandle olddirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string oldpath,
        SafeFileHandle newdirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string newpath);

    public static int Renameat(SafeFileHandle dir, string from, string to) =>
        RenameatCore(dir, from, dir, to) == 0 ? 0 : -Marshal.GetLastPInvokeError();

    [LibraryImport(Library, EntryPoint = "unlinkat", SetLastError = true)]
    private static partial int UnlinkatCore(SafeFileHandle dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    public static int Unlinkat(SafeFileHandle dir, string name) =>
        UnlinkatCore(dir, name, 0) == 0 ? 0 : -Marshal.GetLastPInvokeError();

    [LibraryImport(Library, EntryPoint = "fchownat", SetLastError = true)]
    private static partial int FchownatCore(SafeFileHandle dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path,
        uint owner, uint group, int flags);

    /// <summary>Changes the owner of the open file itself (<c>AT_EMPTY_PATH</c>), never of a name that could be swapped.</summary>
    public static int Fchown(SafeFileHandle file, uint owner, uint group) =>
        FchownatCore(file, "", owner, group, AT_EMPTY_PATH) == 0 ? 0 : -Marshal.GetLastPInvokeError();

    [LibraryImport(Library, EntryPoint = "fchmod", SetLastError = true)]
    private static partial int FchmodCore(SafeFileHandle fd, uint mode);

    public static int Fchmod(SafeFileHandle file, uint mode) =>
        FchmodCore(file, mode) == 0 ? 0 : -Marshal.GetLastPInvokeError();

    [LibraryImport(Library, EntryPoint = "statx", SetLastError = true)]
    private static partial int StatxCore(SafeFileHandle dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags,
        uint mask, out Statx buffer);

    /// <summary><c>statx</c> of a name in <paramref name="dir"/> without following a final symbolic link.</summary>
    public static int StatNoFollow(SafeFileHandle dir, string name, out Statx buffer) =>
        StatxCore(dir, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, out buffer) == 0 ? 0 : -Marshal.GetLastPInvokeError();

    /// <summary><c>statx</c> of the open file itself.</summary>
    public static int Stat(SafeFileHandle file, out Statx buffer) =>
        StatxCore(file, "", AT_EMPTY_PATH, STATX_BASIC_STATS, out buffer) == 0 ? 0 : -Marshal.GetLastPInvokeError();

    [LibraryImport(Library, EntryPoint = "flock", SetLastError = true)]
    private static partial int FlockCore(SafeFileHandle fd, int operation);

    public const int LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4;

    /// <summary><c>flock(2)</c>: 0, or -errno (<c>EWOULDBLOCK</c> is <see cref="EAGAIN"/> with <see cref="LOCK_NB"/>).</summary>
    public static int Flock(SafeFileHandle file, int operation) =>
        FlockCore(file, operation) == 0 ? 0 : -Marshal.GetLastPInvokeError();

    [LibraryImport(Library, EntryPoint = "fdopendir", SetLastError = true)]
    public static partial nint Fdopendir(int fd);

    [LibraryImport(Library, EntryPoint = "readdir64", SetLastError = true)]
    public static partial nint Readdir64(nint dir);

    [LibraryImport(Library, EntryPoint = "closedir", SetLastError = true)]
    public static partial int Closedir(nint dir);

    [LibraryImport(Library, EntryPoint = "geteuid")]
    public static partial uint Geteuid();

    public const int SIGKILL = 9;

    [LibraryImport(Library, EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
