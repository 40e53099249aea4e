using System.Diagnostics;
using HarnessServer.Sandbox;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace HarnessServer.Benchmarks;

/// <summary>
/// Wall time of one sandboxed <c>true</c>, start to exit, three ways in one run, interleaved in rounds so the shared
/// machine's noise falls on all of them alike: bare bubblewrap with the ANCHORS isolation (the baseline), the
/// server's launcher with rlimits only, and the launcher with a control group per call (what this host uses).
/// </summary>
internal static class SandboxStartProbe
{
    private const int Rounds = 30;
    private const int PerRound = 10;

    public static async Task RunAsync()
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("bubblewrap runs on Linux only.");
        }

        var workspace = Directory.CreateTempSubdirectory("harness-sandbox-start-");
        try
        {
            var rlimits = Launcher(useCgroups: false, out _);
            var grouped = Launcher(useCgroups: true, out var groups);
            var options = new SandboxOptions();
            File.SetUnixFileMode(workspace.FullName, (UnixFileMode)0x1FF);
            var user = SandboxUser.ProbeUserOf(options);
            var command = new SandboxCommand { WorkspacePath = workspace.FullName, User = user, Argv = ["true"], TimeoutSeconds = 10 };

            var bare = new List<double>();
            var plain = new List<double>();
            var cgroup = new List<double>();
            for (var round = -1; round < Rounds; round++)
            {
                var warmUp = round < 0;
                await TimeAsync(warmUp ? null : bare, () => BareAsync(workspace.FullName, user));
                await TimeAsync(warmUp ? null : plain, () => rlimits.RunAsync(command, CancellationToken.None));
                await TimeAsync(warmUp ? null : cgroup, () => grouped.RunAsync(command, CancellationToken.None));
            }

            Console.WriteLine($"{Rounds * PerRound} runs each, interleaved in rounds of {PerRound}; limits on this host: {groups.Description}");
            Console.WriteLine();
            Console.WriteLine("| sandbox start to exit of `true` | p50 | p95 | mean | vs bare bwrap (p50) |");
            Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
            Print("baseline: bare `setpriv` + `bwrap` (ANCHORS isolation)", bare, bare);
            Print("launcher, rlimits only", plain, bare);
            Print("launcher, control group per call", cgroup, bare);
        }
        finally
        {
            workspace.Delete(recursive: true);
        }
    }

    private static BubblewrapLauncher Launcher(bool useCgroups, out ControlGroups groups)
    {
        var options = Options.Create(new SandboxOptions { UseCgroupV1 = useCgroups });
        groups = new ControlGroups(options, NullLogger<ControlGroups>.Instance);
        return new BubblewrapLauncher(options, groups, NullLogger<BubblewrapLauncher>.Instance);
    }

    private static async Task TimeAsync(List<double>? into, Func<Task> run)
    {
        for (var i = 0; i < PerRound; i++)
        {
            var clock = Stopwatch.StartNew();
            await run();
            into?.Add(clock.Elapsed.TotalMilliseconds);
        }
    }

    private static async Task BareAsync(string workspace, SandboxUser user)
    {
        var exitCode = await HarnessServer.Bench.BareBubblewrap.RunTrueAsync(workspace, user.Uid, user.Gid);
        if (exitCode != 0)
        {
            throw new InvalidOperationException($"bare bwrap exited {exitCode}");
        }
    }

    private static void Print(string name, List<double> times, List<double> baseline)
    {
        static double Percentile(List<double> values, double p)
        {
            var sorted = values.Order().ToArray();
            return sorted[(int)Math.Min(sorted.Length - 1, Math.Ceiling(p * sorted.Length) - 1)];
        }

        Console.WriteLine($"| {name} | {Percentile(times, 0.5):F1} ms | {Percentile(times, 0.95):F1} ms | {times.Average():F1} ms | "
            + $"x{Percentile(times, 0.5) / Percentile(baseline, 0.5):F2} |");
    }
}
