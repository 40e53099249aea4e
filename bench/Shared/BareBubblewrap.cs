using System.Diagnostics;

namespace HarnessServer.Bench;

/// <summary>
/// The baseline the sandbox benchmarks compare a start with: <c>setpriv</c> + <c>bwrap</c> with the same namespaces
/// and mounts as the launcher's command line, running <c>/usr/bin/true</c> in <paramref name="workspace"/>, started
/// directly by the benchmark (no launcher, no limits, no control group). Shared as source by the benchmark projects.
/// </summary>
internal static class BareBubblewrap
{
    /// <summary>Runs it once as <paramref name="uid"/>:<paramref name="gid"/>; returns its exit code.</summary>
    public static async Task<int> RunTrueAsync(string workspace, int uid, int gid)
    {
        var start = new ProcessStartInfo("/usr/bin/setpriv") { UseShellExecute = false };
        foreach (var arg in (string[])["--reuid", $"{uid}", "--regid", $"{gid}", "--clear-groups", "--", "/usr/bin/bwrap",
                     "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
                     "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev",
                     "--tmpfs", "/tmp", "--bind", workspace, "/workspace", "--chdir", "/workspace", "--", "/usr/bin/true"])
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        await process.WaitForExitAsync();
        return process.ExitCode;
    }
}
