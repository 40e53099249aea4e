using System.Runtime.InteropServices;
using HarnessServer.Sandbox;
using Microsoft.Win32.SafeHandles;

namespace HarnessServer.Tests.Sandbox;

/// <summary>Host-side moves an attacker would make: hard links, FIFOs, renames that ignore errors.</summary>
internal static class NativeTest
{
    [DllImport("libc", EntryPoint = "link", SetLastError = true)]
    public static extern int Link(string existing, string created);

    [DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    public static extern int Mkfifo(string path, uint mode);

    [DllImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static extern int RenameCore(string from, string to);

    public static void Rename(string from, string to) => RenameCore(from, to);

    [DllImport("libc", EntryPoint = "chown", SetLastError = true)]
    public static extern int Chown(string path, uint owner, uint group);

    public static int OwnerOf(string path) => (int)StatOf(path).Uid;

    public static int GroupOf(string path) => (int)StatOf(path).Gid;

    private static Libc.Statx StatOf(string path)
    {
        var fd = Libc.Openat2(Libc.AT_FDCWD, path, Libc.O_PATH | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0, 0);
        Assert.True(fd >= 0, $"cannot open {path}: {-fd}");
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        Assert.Equal(0, Libc.Stat(handle, out var stat));
        return stat;
    }
}
