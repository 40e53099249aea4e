using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using HarnessServer.Sandbox;

namespace HarnessServer.Tests.Sandbox;

[Collection(SandboxCollection.Name)]
public sealed class BubblewrapSandboxTests(SandboxFixture fixture) : IDisposable
{
    private readonly Workspace _workspace = fixture.NewWorkspace();

    public void Dispose() => _workspace.Dispose();

    [Fact]
    public async Task Probe_finds_the_sandbox_available()
    {
        var outcome = await fixture.Probe.WaitAsync(CancellationToken.None);

        Assert.True(outcome.IsAvailable, outcome.FailureReason);
        Assert.True(fixture.Probe.IsAvailable);
    }

    [Fact]
    public async Task Runs_as_the_tenants_unprivileged_sandbox_user_in_the_workspace()
    {
        var user = SandboxFixture.UserOf("acme");

        var result = await fixture.ShellAsync(_workspace, "id -u; id -g; pwd; echo made > out.txt");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal($"{user.Uid}\n{user.Gid}\n/workspace\n", result.Stdout);
        Assert.Equal("made", _workspace.Read("out.txt").Content.Trim());
        Assert.Equal(user.Uid, NativeTest.OwnerOf(Path.Combine(_workspace.FullPath, "out.txt")));
    }

    [Fact]
    public async Task Argv_entries_are_never_shell_text()
    {
        var result = await fixture.Sandbox.RunAsync(new SandboxCommand
        {
            WorkspacePath = _workspace.FullPath,
            User = _workspace.Owner,
            Argv = ["printf", "%s|", "a b", "$(id -u)", "; touch pwned"],
        }, CancellationToken.None);

        Assert.Equal("a b|$(id -u)|; touch pwned|", result.Stdout);
        Assert.Empty(_workspace.List("").Entries);
    }

    [Theory]
    [InlineData("echo x > /usr/harness-x", "/usr/harness-x")]
    [InlineData("touch /tmp/../etc/harness-x", "/etc/harness-x")]
    [InlineData("mkdir -p /home/harness-x", "/home/harness-x")]
    [InlineData("touch /harness-x", "/harness-x")]
    [InlineData("touch /workspace/../harness-x", "/harness-x")]
    public async Task Cannot_write_outside_the_workspace(string command, string hostPath)
    {
        var result = await fixture.ShellAsync(_workspace, command);

        Assert.NotEqual(0, result.ExitCode);
        Assert.False(Path.Exists(hostPath));
    }

    [Fact]
    public async Task Sees_no_host_files_beyond_usr()
    {
        var result = await fixture.ShellAsync(_workspace, "ls /; ls /etc; test -e /etc/passwd || echo no-passwd; test -e /root || echo no-root");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("no-passwd", result.Stdout);
        Assert.Contains("no-root", result.Stdout);
        Assert.DoesNotContain("home", result.Stdout);
    }

    [Fact]
    public async Task Has_no_network_not_even_to_the_hosts_loopback()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;

        var result = await fixture.ShellAsync(_workspace,
            $"bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' && echo connected; getent hosts example.com && echo resolved; cat /proc/net/dev");

        Assert.DoesNotContain("connected", result.Stdout);
        Assert.DoesNotContain("resolved", result.Stdout);
        Assert.DoesNotContain("eth", result.Stdout);
        Assert.Contains("lo:", result.Stdout);
        Assert.False(listener.Pending());
    }

    [Fact]
    public async Task Server_environment_is_scrubbed()
    {
        Environment.SetEnvironmentVariable("HARNESS_TEST_SECRET", "hunter2");

        var result = await fixture.ShellAsync(_workspace, "env", environment: new Dictionary<string, string> { ["GIT_AUTHOR_NAME"] = "agent" });

        Assert.DoesNotContain("hunter2", result.Stdout);
        // The rest is what programs are told so they read no agent-written configuration (ShellEnvironmentTests).
        Assert.Equal(["GIT_AUTHOR_NAME=agent", "HOME=/empty", "LANG=C.UTF-8", "PATH=/usr/bin:/bin", "PWD=/workspace", "TMPDIR=/tmp"],
            result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Where(l => !l.StartsWith("SHLVL=") && !l.StartsWith("_=") && !HarnessSettings().IsMatch(l))
                .Order());
    }

    private static System.Text.RegularExpressions.Regex HarnessSettings() =>
        new("^(GIT_CONFIG_[A-Z_0-9]+|GIT_TERMINAL_PROMPT|GIT_PAGER|GIT_ATTR_NOSYSTEM|XDG_CONFIG_HOME|PAGER|PIP_CONFIG_FILE|NPM_CONFIG_[A-Z]+|PYTHONNOUSERSITE)=");

    [Fact]
    public async Task Other_workspaces_are_not_visible_inside()
    {
        using var other = fixture.NewWorkspace("globex");
        other.Write("secret.txt", "globex data");

        var result = await fixture.ShellAsync(_workspace,
            $"cat {other.FullPath}/secret.txt; cat ../secret.txt; ls -a ..; find / -name secret.txt -not -path '/proc/*' 2>/dev/null; echo done");

        Assert.DoesNotContain("globex data", result.Stdout);
        Assert.DoesNotContain("secret.txt", result.Stdout);
        Assert.EndsWith("done\n", result.Stdout);
    }

    // Issue 16, finding 3: /dev was a writable, uncapped tmpfs; 300 MB went into /dev/shm while /tmp stopped at its
    // cap. Written as files of MaxFileBytes (each file is capped by RLIMIT_FSIZE too).
    [Fact]
    public async Task Dev_is_read_only_and_dev_shm_is_capped()
    {
        var files = 300L * 1024 * 1024 / fixture.Options.MaxFileBytes;
        var result = await fixture.ShellAsync(_workspace,
            $"for i in $(seq {files}); do head -c {fixture.Options.MaxFileBytes} /dev/zero > /dev/shm/f$i 2>/dev/null || break; done; " +
            "echo shm=$(cat /dev/shm/* | wc -c); echo x > /dev/planted 2>/dev/null && echo planted; echo ok > /dev/null && echo null-ok; " +
            "mkdir /dev/d 2>/dev/null && echo mkdir; echo x > /dev/shm/small && echo small-ok", timeoutSeconds: 60);

        var shm = long.Parse(result.Stdout.Split('\n').Single(l => l.StartsWith("shm=", StringComparison.Ordinal))[4..]);
        Assert.InRange(shm, 1, fixture.Options.ShmBytes);
        Assert.DoesNotContain("planted", result.Stdout);
        Assert.DoesNotContain("mkdir", result.Stdout);
        Assert.Contains("null-ok", result.Stdout);
    }

    // Calls an agent never needs are denied with EPERM by the seccomp filter (SeccompFilter has the list). Without it
    // some already fail for other reasons (ptrace, userfaultfd: EPERM from the host's settings), but keyctl answers
    // EINVAL and io_uring_setup EFAULT: the kernel code behind them ran. Ordinary calls still work.
    [Fact]
    public async Task Denied_system_calls_fail_with_EPERM_inside()
    {
        const string script = """
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            for name, nr in [("ptrace", 101), ("keyctl", 250), ("bpf", 321), ("userfaultfd", 323), ("mount", 165), ("unshare", 272), ("io_uring_setup", 425), ("perf_event_open", 298)]:
                ctypes.set_errno(0)
                r = libc.syscall(nr, 0, 0, 0, 0, 0)
                print(name, r, ctypes.get_errno())
            print("getpid", libc.syscall(39) == os.getpid())
            """;
        await File.WriteAllTextAsync(Path.Combine(_workspace.FullPath, "calls.py"), script);

        var result = await fixture.ShellAsync(_workspace, "python3 calls.py");

        Assert.True(result.ExitCode == 0, result.Stderr);
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        foreach (var name in new[] { "ptrace", "keyctl", "bpf", "userfaultfd", "mount", "unshare", "io_uring_setup", "perf_event_open" })
        {
            Assert.Contains($"{name} -1 1", lines);
        }

        Assert.Contains("getpid True", lines);
    }

    [Fact]
    public async Task Huge_output_is_cut_with_a_marker()
    {
        var result = await fixture.ShellAsync(_workspace, "yes | head -c 5000000; echo err >&2");

        Assert.Equal(0, result.ExitCode);
        Assert.True(result.Truncated);
        Assert.EndsWith($"\n[output truncated at {fixture.Options.MaxOutputBytes} bytes]", result.Stdout);
        Assert.Equal(fixture.Options.MaxOutputBytes + $"\n[output truncated at {fixture.Options.MaxOutputBytes} bytes]".Length, result.Stdout.Length);
        Assert.EndsWith("err\n", result.Stderr);
    }

    [Fact]
    public async Task Timeout_kills_the_whole_process_tree()
    {
        var clock = Stopwatch.StartNew();

        var result = await fixture.ShellAsync(_workspace, "sleep 1000 & echo $! > bg.pid; sleep 100", timeoutSeconds: 1);

        Assert.True(result.TimedOut);
        Assert.True(result.Killed);
        Assert.False(result.Succeeded);
        // Bounded by the 1 s limit, not by `sleep 100`; the slack is for a loaded 2-core machine.
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.9, 4);
        await Task.Delay(200);
        Assert.Empty(SandboxUserProcesses("sleep"));
    }

    [Fact]
    public async Task Background_children_do_not_outlive_a_finished_call()
    {
        var result = await fixture.ShellAsync(_workspace, "(sleep 1000 >/dev/null 2>&1 &); echo started");

        Assert.Equal("started\n", result.Stdout);
        await Task.Delay(200);
        Assert.Empty(SandboxUserProcesses("sleep 1000"));
    }

    [Fact]
    public async Task Fork_bomb_is_contained()
    {
        var clock = Stopwatch.StartNew();

        var result = await fixture.ShellAsync(_workspace, "bash -c ':(){ :|:& };:'; sleep 30", timeoutSeconds: 3);

        // Bounded by the 3 s limit, not by `sleep 30`; the slack is for killing the storm on a loaded 2-core machine.
        Assert.InRange(clock.Elapsed.TotalSeconds, 0, 8);
        Assert.Contains("fork", result.Stderr + result.Stdout, StringComparison.OrdinalIgnoreCase);
        await Task.Delay(200);
        Assert.Empty(SandboxUserProcesses("bash"));
        var after = await fixture.ShellAsync(_workspace, "echo alive");
        Assert.Equal("alive\n", after.Stdout);
    }

    [Fact]
    public async Task Memory_hog_fails()
    {
        var result = await fixture.ShellAsync(_workspace, "python3 -c 'x = bytearray(2 * 1024 ** 3); print(\"allocated\")'");

        Assert.NotEqual(0, result.ExitCode);
        Assert.DoesNotContain("allocated", result.Stdout);
        Assert.Contains("MemoryError", result.Stderr);
    }

    [Fact]
    public async Task Processes_that_together_exceed_the_group_memory_are_killed_and_the_group_is_removed()
    {
        // Each process stays under its own address-space limit (512 MiB); together they pass the group's 256 MiB.
        Assert.Equal(LimitMechanism.CgroupV1, fixture.Groups.Mechanism);
        var hog = "python3 -c 'import time; b = b\"x\" * (120 * 1024 * 1024); time.sleep(20)'";

        var result = await fixture.ShellAsync(_workspace, $"{hog} & {hog} & {hog} & wait; echo done", timeoutSeconds: 15);

        Assert.True(result.Killed, result.Stderr);
        Assert.Contains($"memory limit of {fixture.Options.GroupMemoryBytes} bytes", result.Stderr);
        Assert.InRange(result.DurationMs, 0, 10_000);
        Assert.Empty(SandboxUserProcesses("python3"));
        var after = await fixture.ShellAsync(_workspace, "echo alive");
        Assert.Equal("alive\n", after.Stdout);
    }

    [Fact]
    public void A_calls_group_has_the_limits_written_and_is_gone_once_disposed()
    {
        string[] folders;
        using (var group = fixture.Groups.Create())
        {
            Assert.NotNull(group);
            folders = [.. group.Folders];
            Assert.Equal(Path.Combine(SandboxGroups, Path.GetFileName(folders[0])), folders[0]);
            Assert.Equal($"{fixture.Options.GroupMemoryBytes}", File.ReadAllText(Path.Combine(folders[0], "memory.limit_in_bytes")).Trim());
            Assert.Equal($"{fixture.Options.MaxProcesses}", File.ReadAllText(Path.Combine(folders[1], "pids.max")).Trim());
            Assert.False(group.OutOfMemory);
        }

        Assert.All(folders, f => Assert.False(Directory.Exists(f), f));
    }

    private static string SandboxGroups =>
        "/sys/fs/cgroup/memory" + File.ReadAllLines("/proc/self/cgroup").Select(l => l.Split(':', 3)).Single(f => f[1] == "memory")[2]
        + $"/harness-sandboxes/server-{Environment.ProcessId}";

    [Fact]
    public async Task Files_stop_at_the_size_limit()
    {
        var result = await fixture.ShellAsync(_workspace, "head -c 5000000 /dev/zero > big");

        Assert.NotEqual(0, result.ExitCode);
        Assert.Equal(fixture.Options.MaxFileBytes, new FileInfo(Path.Combine(_workspace.FullPath, "big")).Length);
    }

    [Fact]
    public async Task A_shell_line_runs_under_hard_limits_it_cannot_raise_and_sees_no_extra_arguments()
    {
        var result = await fixture.ShellAsync(_workspace,
            "echo args=$#; grep -E 'Max (cpu time|file size|processes|address space|core file size)' /proc/self/limits; ulimit -v unlimited && echo raised",
            timeoutSeconds: 7);
        var limits = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(l => l.Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .ToDictionary(f => f[0], f => (Soft: f[1], Hard: f[2]));

        Assert.StartsWith("args=0", result.Stdout);
        Assert.Equal(("8", "8"), limits["Max cpu time"]);
        Assert.Equal(($"{fixture.Options.MaxFileBytes}", $"{fixture.Options.MaxFileBytes}"), limits["Max file size"]);
        Assert.Equal(($"{fixture.Options.MaxProcesses}", $"{fixture.Options.MaxProcesses}"), limits["Max processes"]);
        Assert.Equal(($"{fixture.Options.MaxMemoryBytes}", $"{fixture.Options.MaxMemoryBytes}"), limits["Max address space"]);
        Assert.Equal("0", limits["Max core file size"].Soft);
        Assert.DoesNotContain("raised", result.Stdout);
        Assert.NotEqual(0, result.ExitCode);
    }

    [Fact]
    public async Task Cannot_hard_link_host_files_into_the_workspace()
    {
        var result = await fixture.ShellAsync(_workspace, "ln /usr/bin/sh x || ln /etc/ld.so.cache y");

        Assert.NotEqual(0, result.ExitCode);
        Assert.Empty(_workspace.List("").Entries);
    }

    [Fact]
    public async Task Cancellation_kills_the_sandbox_and_throws()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => fixture.Sandbox.RunAsync(
            new SandboxCommand { WorkspacePath = _workspace.FullPath, User = _workspace.Owner, Command = "sleep 1000" }, cancel.Token));
        await Task.Delay(200);
        Assert.Empty(SandboxUserProcesses("sleep 1000"));
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("echo", new[] { "echo" })]
    [InlineData("a\0b", null)]
    public async Task Malformed_commands_are_refused(string? command, string[]? argv)
    {
        var error = await Assert.ThrowsAsync<SandboxException>(() => fixture.Sandbox.RunAsync(
            new SandboxCommand { WorkspacePath = _workspace.FullPath, User = _workspace.Owner, Command = command, Argv = argv }, CancellationToken.None));

        Assert.Equal(SandboxErrors.InvalidArgument, error.Code);
    }

    // Processes of the tenant's sandbox user on the host whose command line contains the given text.
    private static List<string> SandboxUserProcesses(string text) =>
        Directory.EnumerateDirectories("/proc")
            .Where(d => int.TryParse(Path.GetFileName(d), out _))
            .Select(d =>
            {
                try
                {
                    var status = File.ReadAllText(Path.Combine(d, "status"));
                    var uid = status.Split('\n').First(l => l.StartsWith("Uid:")).Split('\t', StringSplitOptions.RemoveEmptyEntries)[1];
                    return uid == $"{SandboxFixture.UserOf("acme").Uid}" ? File.ReadAllText(Path.Combine(d, "cmdline")).Replace('\0', ' ') : null;
                }
                catch (IOException)
                {
                    return null;
                }
            })
            .Where(c => c is not null && c.Contains(text))
            .Select(c => c!)
            .ToList();
}
