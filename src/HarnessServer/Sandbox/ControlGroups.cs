using System.Globalization;
using Microsoft.Extensions.Options;

namespace HarnessServer.Sandbox;

/// <summary>Which kernel mechanism holds a sandbox's memory and process count.</summary>
internal enum LimitMechanism
{
    /// <summary>Per-process resource limits only (<c>prlimit</c>): the fallback when the host lends no cgroup.</summary>
    Rlimits,

    /// <summary>A cgroup v1 per call in the memory and pids hierarchies (and cpu's, for the weight), plus the rlimits.</summary>
    CgroupV1,

    /// <summary>A cgroup v2 per call under the delegated <c>CgroupRoot</c>, plus the rlimits.</summary>
    CgroupV2,
}

/// <summary>
/// One control group per sandboxed call, where the host lets the server make them, so the limits hold for the whole
/// sandbox: every process of it together, and the tmpfs pages of its <c>/tmp</c> and <c>/dev/shm</c> (charged to the
/// group of the process that wrote them, where rlimits charge nothing). A cgroup v2 subtree is used when an operator
/// delegates one (<c>Harness:Sandbox:CgroupRoot</c>, for example a systemd unit's <c>Delegate=yes</c> subtree); else
/// writable cgroup v1 memory and pids hierarchies (a root server on a v1 host); else nothing, and the rlimits set
/// inside the sandbox are the only limits. <c>/readyz</c> says which is in force.
/// </summary>
/// <remarks>
/// The sandbox's first process is moved into its group before it runs anything (<see cref="BubblewrapLauncher"/>
/// starts a shell that writes its own PID to <c>cgroup.procs</c> and then execs <c>setpriv</c>), so no process of the
/// call is ever outside it. Whatever is left when the call ends is killed and the group removed.
/// </remarks>
internal sealed class ControlGroups : IDisposable
{
    private const string GroupFolder = "harness-sandboxes";

    private readonly SandboxOptions _options;
    private readonly string[] _parents;

    public ControlGroups(IOptions<SandboxOptions> options, ILogger<ControlGroups> logger)
    {
        _options = options.Value;
        (Mechanism, _parents, Description) = Detect(_options);
        if (Mechanism == LimitMechanism.Rlimits)
        {
            logger.LogWarning("Sandbox limits: {Description}", Description);
        }
        else
        {
            logger.LogInformation("Sandbox limits: {Description}", Description);
        }
    }

    public LimitMechanism Mechanism { get; }

    /// <summary>What holds a sandbox's memory and processes, in words (shown by <c>/readyz</c>).</summary>
    public string Description { get; }

    /// <summary>
    /// A fresh group for one call with its limits written, or null when the host lends none. Groups are made ahead
    /// (a few, in the background) so a call does not wait for the mkdirs and writes; each is used by one call only,
    /// so nothing one call was charged for counts against another.
    /// </summary>
    public CallGroup? Create()
    {
        if (Mechanism == LimitMechanism.Rlimits)
        {
            return null;
        }

        var group = _ready.TryDequeue(out var made) ? made : Make();
        Refill();
        return group;
    }

    /// <summary>Removes the groups made ahead that no call took.</summary>
    public void Dispose()
    {
        while (_ready.TryDequeue(out var unused))
        {
            unused.Dispose();
        }
    }

    private const int ReadyGroups = 4;

    private readonly System.Collections.Concurrent.ConcurrentQueue<CallGroup> _ready = new();
    private int _refilling;

    private void Refill()
    {
        if (Interlocked.Exchange(ref _refilling, 1) == 1)
        {
            return;
        }

        _ = Task.Run(() =>
        {
            try
            {
                while (_ready.Count < ReadyGroups)
                {
                    _ready.Enqueue(Make());
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The next call makes its own group, and reports the failure if it persists.
            }
            finally
            {
                Volatile.Write(ref _refilling, 0);
            }
        });
    }

    private CallGroup Make()
    {
        var name = $"call-{Guid.NewGuid():N}";
        var group = new CallGroup(Mechanism, _parents.Select(p => Path.Combine(p, name)).ToArray());
        try
        {
            group.Make();
            var memory = $"{_options.GroupMemoryBytes}";
            var processes = $"{_options.MaxProcesses}";
            if (Mechanism == LimitMechanism.CgroupV2)
            {
                var folder = group.Folders[0];
                Write(folder, "memory.max", memory);
                WriteIfPresent(folder, "memory.swap.max", "0");
                // One process out of memory takes the whole sandbox with it, not just the largest process.
                WriteIfPresent(folder, "memory.oom.group", "1");
                Write(folder, "pids.max", processes);
                WriteIfPresent(folder, "cpu.weight", $"{_options.CpuWeight}");
            }
            else
            {
                foreach (var folder in group.Folders)
                {
                    WriteIfPresent(folder, "memory.limit_in_bytes", memory);
                    WriteIfPresent(folder, "memory.memsw.limit_in_bytes", memory);
                    WriteIfPresent(folder, "memory.swappiness", "0");
                    WriteIfPresent(folder, "pids.max", processes);
                    // cpu.shares is relative to 1024 as cpu.weight is to 100.
                    WriteIfPresent(folder, "cpu.shares", $"{Math.Max(2, _options.CpuWeight * 1024 / 100)}");
                }
            }

            return group;
        }
        catch
        {
            group.Dispose();
            throw;
        }
    }

    private static (LimitMechanism, string[], string) Detect(SandboxOptions options)
    {
        const string rlimits = "rlimits only (no cgroup v2 subtree is delegated to the server and no cgroup v1 memory and pids hierarchy is writable): "
            + "memory is capped per process (address space), not per sandbox; set Harness:Sandbox:CgroupRoot to a delegated cgroup v2 folder.";
        if (!string.IsNullOrEmpty(options.CgroupRoot))
        {
            return (LimitMechanism.CgroupV2, [PrepareV2(options.CgroupRoot)],
                $"cgroup v2 under {options.CgroupRoot}: memory {options.GroupMemoryBytes} bytes and {options.MaxProcesses} processes per sandbox, cpu weight {options.CpuWeight}; rlimits as well.");
        }

        if (!options.UseCgroupV1)
        {
            return (LimitMechanism.Rlimits, [], rlimits);
        }

        var found = new[] { "memory", "pids", "cpu" }.Select(c => (Controller: c, Parent: V1Parent(c))).Where(f => f.Parent is not null).ToArray();
        if (!found.Any(f => f.Controller == "memory") || !found.Any(f => f.Controller == "pids"))
        {
            return (LimitMechanism.Rlimits, [], rlimits);
        }

        return (LimitMechanism.CgroupV1, found.Select(f => f.Parent!).ToArray(),
            $"cgroup v1 ({string.Join(", ", found.Select(f => f.Controller))}): memory {options.GroupMemoryBytes} bytes and {options.MaxProcesses} processes per sandbox; rlimits as well.");
    }

    /// <summary>The operator's delegated v2 folder, with the controllers the sandboxes need enabled for its children.</summary>
    private static string PrepareV2(string root)
    {
        var controllers = File.ReadAllText(Path.Combine(root, "cgroup.controllers")).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var needed in new[] { "memory", "pids" })
        {
            if (!controllers.Contains(needed))
            {
                throw new InvalidOperationException(
                    $"Harness:Sandbox:CgroupRoot '{root}' has no {needed} controller (cgroup.controllers: {string.Join(' ', controllers)}).");
            }
        }

        var enable = string.Join(' ', new[] { "memory", "pids", "cpu" }.Where(controllers.Contains).Select(c => $"+{c}"));
        File.WriteAllText(Path.Combine(root, "cgroup.subtree_control"), enable);
        var parent = ServerFolder(LimitMechanism.CgroupV2, root);
        File.WriteAllText(Path.Combine(parent, "cgroup.subtree_control"), enable);
        return parent;
    }

    /// <summary>
    /// The folder sandboxes' groups go in, in one v1 hierarchy, below the server's own group there; null when the
    /// hierarchy is absent or not writable (the server is not root, or the host mounted it read-only).
    /// </summary>
    private static string? V1Parent(string controller)
    {
        try
        {
            var mount = $"/sys/fs/cgroup/{controller}";
            if (!File.Exists(Path.Combine(mount, "cgroup.procs")) || File.Exists(Path.Combine(mount, "cgroup.controllers")))
            {
                return null;
            }

            var own = File.ReadAllLines("/proc/self/cgroup")
                .Select(l => l.Split(':', 3))
                .Where(f => f.Length == 3 && f[1].Split(',').Contains(controller))
                .Select(f => f[2])
                .FirstOrDefault();
            if (own is null)
            {
                return null;
            }

            var parent = ServerFolder(LimitMechanism.CgroupV1, Path.Combine(mount + own, GroupFolder));
            // The test a group has to pass: make one, and remove it.
            var probe = Path.Combine(parent, $"probe-{Environment.ProcessId}");
            Directory.CreateDirectory(probe);
            Directory.Delete(probe);
            return parent;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// This server process's folder under <paramref name="root"/>, made after removing the folders of server processes
    /// that are gone (killed mid-call, they left their calls' groups behind). Replicas on one host and hosts in one
    /// test process never touch each other's groups.
    /// </summary>
    private static string ServerFolder(LimitMechanism mechanism, string root)
    {
        Directory.CreateDirectory(root);
        foreach (var stale in Directory.GetDirectories(root, "server-*"))
        {
            if (int.TryParse(Path.GetFileName(stale)["server-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                && pid != Environment.ProcessId && !Directory.Exists($"/proc/{pid}"))
            {
                CallGroup.Sweep(mechanism, stale);
            }
        }

        var folder = Path.Combine(root, $"server-{Environment.ProcessId}");
        Directory.CreateDirectory(folder);
        return folder;
    }

    private static void Write(string folder, string file, string value) => File.WriteAllText(Path.Combine(folder, file), value);

    private static void WriteIfPresent(string folder, string file, string value)
    {
        var path = Path.Combine(folder, file);
        if (File.Exists(path))
        {
            File.WriteAllText(path, value);
        }
    }
}

/// <summary>One call's control group (a folder per hierarchy under v1, one under v2); disposing it empties and removes it.</summary>
internal sealed class CallGroup(LimitMechanism mechanism, string[] folders) : IDisposable
{
    public IReadOnlyList<string> Folders => folders;

    /// <summary>Whether the kernel killed a process of the sandbox because the group ran out of memory.</summary>
    public bool OutOfMemory
    {
        get
        {
            var file = Path.Combine(folders[0], mechanism == LimitMechanism.CgroupV2 ? "memory.events" : "memory.oom_control");
            if (!File.Exists(file))
            {
                return false;
            }

            return File.ReadLines(file)
                .Select(l => l.Split(' ', 2))
                .Any(f => f.Length == 2 && f[0] == "oom_kill" && long.TryParse(f[1], NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0);
        }
    }

    /// <summary>Removes a gone server process's folder with the groups of the calls it left behind.</summary>
    internal static void Sweep(LimitMechanism mechanism, string serverFolder)
    {
        new CallGroup(mechanism, [.. Directory.GetDirectories(serverFolder, "call-*"), serverFolder]).Dispose();
    }

    internal void Make()
    {
        foreach (var folder in folders)
        {
            Directory.CreateDirectory(folder);
        }
    }

    /// <summary>Empties and removes the group in the background, retrying while its last processes are reaped.</summary>
    public void Release() => _ = Task.Run(async () =>
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var left = folders.Where(Directory.Exists).ToArray();
            if (left.Length == 0)
            {
                return;
            }

            foreach (var folder in left)
            {
                try
                {
                    Empty(folder, rounds: 1);
                    Directory.Delete(folder);
                }
                catch (IOException)
                {
                    // Busy until the kernel has reaped the members; the next attempt follows shortly.
                }
            }

            await Task.Delay(10 * (attempt + 1));
        }
    });

    public void Dispose()
    {
        foreach (var folder in folders.Where(Directory.Exists))
        {
            Empty(folder);
            try
            {
                Directory.Delete(folder);
            }
            catch (IOException)
            {
                // A process still exiting keeps the group busy for a moment: try once more after it is reaped.
                Thread.Sleep(20);
                Empty(folder);
                TryDelete(folder);
            }
        }
    }

    private void Empty(string folder, int rounds = 10)
    {
        var kill = Path.Combine(folder, "cgroup.kill");
        if (mechanism == LimitMechanism.CgroupV2 && File.Exists(kill))
        {
            File.WriteAllText(kill, "1");
            return;
        }

        // v1 has no cgroup.kill: a few rounds of SIGKILL to every member catch a process forked meanwhile.
        for (var round = 0; round < rounds; round++)
        {
            var members = File.ReadAllLines(Path.Combine(folder, "cgroup.procs"));
            if (members.Length == 0)
            {
                return;
            }

            foreach (var member in members)
            {
                if (int.TryParse(member, NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
                {
                    _ = Libc.Kill(pid, Libc.SIGKILL);
                }
            }

            Thread.Sleep(5);
        }
    }

    private static void TryDelete(string folder)
    {
        try
        {
            Directory.Delete(folder);
        }
        catch (IOException)
        {
            // Left for the sweep when this server process is gone; an empty group costs nothing.
        }
    }
}
