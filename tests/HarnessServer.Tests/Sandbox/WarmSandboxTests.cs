using HarnessServer.Sandbox;

namespace HarnessServer.Tests.Sandbox;

/// <summary>
/// The warm sandbox (<c>Harness:Sandbox:Warm</c>, on in the fixture): one sandbox per workspace across calls, and yet
/// nothing of call N but the workspace's files is there in call N+1. Each test first proves the two calls ran in the
/// same warm sandbox, so a silent fall-back to the cold path cannot make it pass.
/// </summary>
[Collection(SandboxCollection.Name)]
public sealed class WarmSandboxTests(SandboxFixture fixture) : IDisposable
{
    private readonly Workspace _workspace = fixture.NewWorkspace();
    private readonly string _marker = $"warm-{Guid.NewGuid():N}";

    public void Dispose() => _workspace.Dispose();

    [Fact]
    public void The_fixture_runs_the_warm_path()
    {
        Assert.True(fixture.Options.Warm);
        Assert.True(File.Exists(BubblewrapLauncher.WarmInitHostPath), BubblewrapLauncher.WarmInitHostPath);
    }

    [Fact]
    public async Task A_background_process_tmp_shm_ipc_and_environment_of_one_call_are_gone_in_the_next()
    {
        _workspace.Write(_marker, "");
        var first = await fixture.ShellAsync(_workspace,
            "(sleep 1000 >/dev/null 2>&1 &); nohup sleep 1001 >/dev/null 2>&1 & echo left > /tmp/left; echo left > /dev/shm/left; " +
            "ipcmk -M 4096 >/dev/null; export LEFT=1; ls -A /tmp /dev/shm; env | grep -c '^CALL_ONE='",
            environment: new Dictionary<string, string> { ["CALL_ONE"] = "yes" });
        var init = WarmInit();

        var second = await fixture.ShellAsync(_workspace,
            "echo tmp=$(ls -A /tmp | wc -l) shm=$(ls -A /dev/shm | wc -l) ipc=$(ipcs -m | grep -c '^0x'); env | grep -E '^(CALL_ONE|LEFT)='; " +
            "ps -e -o comm= > /tmp/ps; sort /tmp/ps | tr '\\n' ' '");

        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.Contains("left", first.Stdout);
        Assert.EndsWith("1\n", first.Stdout);
        Assert.NotNull(init);
        Assert.Equal(init, WarmInit());
        Assert.StartsWith("tmp=0 shm=0 ipc=0\n", second.Stdout);
        Assert.DoesNotContain("CALL_ONE", second.Stdout);
        Assert.DoesNotContain("LEFT", second.Stdout);
        // The command's own PID namespace: its shell and ps, nothing of the first call and not the init.
        Assert.EndsWith("\nps sh ", second.Stdout);
        Assert.Empty(SandboxUserProcesses("sleep 100"));
    }

    [Fact]
    public async Task The_command_has_no_capabilities_and_is_pid_1_of_its_own_namespace()
    {
        _workspace.Write(_marker, "");

        var result = await fixture.ShellAsync(_workspace, "echo $$; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status | awk '{print $2}' | sort -u; grep NoNewPrivs /proc/self/status");

        Assert.NotNull(WarmInit());
        Assert.Equal("1\n0000000000000000\nNoNewPrivs:\t1\n", result.Stdout);
    }

    [Fact]
    public async Task A_crashed_init_is_replaced_and_the_next_call_runs()
    {
        _workspace.Write(_marker, "");
        await fixture.ShellAsync(_workspace, "true");
        var crashed = WarmInit();
        Assert.NotNull(crashed);

        Assert.Equal(0, Libc.Kill(crashed.Value, Libc.SIGKILL));
        for (var i = 0; i < 100 && Directory.Exists($"/proc/{crashed}"); i++)
        {
            await Task.Delay(20);
        }

        var result = await fixture.ShellAsync(_workspace, "echo alive");
        var replacement = WarmInit();

        Assert.Equal("alive\n", result.Stdout);
        Assert.NotNull(replacement);
        Assert.NotEqual(crashed, replacement);
        Assert.Equal("again\n", (await fixture.ShellAsync(_workspace, "echo again")).Stdout);
        Assert.Equal(replacement, WarmInit());
    }

    [Fact]
    public async Task A_timed_out_call_leaves_the_warm_sandbox_usable()
    {
        _workspace.Write(_marker, "");
        var timedOut = await fixture.ShellAsync(_workspace, "sleep 100 & sleep 100", timeoutSeconds: 1);
        var init = WarmInit();

        var after = await fixture.ShellAsync(_workspace, "ps -e -o comm= | grep -c sleep");

        Assert.True(timedOut.TimedOut);
        Assert.NotNull(init);
        Assert.Equal(init, WarmInit());
        Assert.Equal("0\n", after.Stdout);
    }

    // The host pid of the warm sandbox's init for this test's workspace: the harness-init whose /workspace holds the
    // marker file (the test runs as root, so it may look into the init's root).
    private int? WarmInit()
    {
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(entry), out var pid))
            {
                continue;
            }

            try
            {
                if (File.ReadAllText(Path.Combine(entry, "cmdline")) == "/.harness-init\0"
                    && File.Exists(Path.Combine(entry, "root", "workspace", _marker)))
                {
                    return pid;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Gone meanwhile, or not ours to look into.
            }
        }

        return null;
    }

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
