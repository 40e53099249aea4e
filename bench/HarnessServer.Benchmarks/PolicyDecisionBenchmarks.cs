using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using HarnessServer.Policies;
using Perfolizer.Horology;

namespace HarnessServer.Benchmarks;

/// <summary>
/// Decision latency at 10, 1,000 and 10,000 rules: warm (resolver and tool plan cached), cold (compile the whole
/// tenant and decide once, as after a policy change) and the naive scan of every rule as the baseline.
/// </summary>
[Config(typeof(PolicyBenchmarkConfig))]
public class PolicyDecisionBenchmarks
{
    private readonly Dictionary<string, string?> _write = new() { ["path"] = "src/app/../lib/Program.cs", ["content"] = "x" };
    private readonly Dictionary<string, string?> _shell = new() { ["command"] = "git status && dotnet test tests/x.csproj | git log -1" };
    private PolicySet _set = null!;
    private PolicyResolver _resolver = null!;
    private NaiveLinearScan _naive = null!;

    [Params(10, 1_000, 10_000)]
    public int Rules { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _set = PolicyWorkload.Create(Rules);
        _naive = new NaiveLinearScan(_set);
        _resolver = PolicyCompiler.Compile(_set).For(PolicyWorkload.User, PolicyWorkload.Teams);
        _resolver.Decide("fs.write", _write, "/ws");
        _resolver.Decide("shell.exec", _shell, "/ws");
    }

    [Benchmark(Baseline = true, Description = "naive scan, fs.write")]
    public int NaiveScan() => (int)_naive.Decide(PolicyWorkload.User, PolicyWorkload.Teams, "fs.write", _write);

    [Benchmark(Description = "warm, fs.write")]
    public int WarmWrite() => (int)_resolver.Decide("fs.write", _write, "/ws").Effect;

    [Benchmark(Description = "warm, shell.exec 3 commands")]
    public int WarmShell() => (int)_resolver.Decide("shell.exec", _shell, "/ws").Effect;

    [Benchmark(Description = "cold: compile + first decision")]
    public int ColdCompileAndDecide() =>
        (int)PolicyCompiler.Compile(_set).For(PolicyWorkload.User, PolicyWorkload.Teams).Decide("fs.write", _write, "/ws").Effect;
}

internal sealed class PolicyBenchmarkConfig : ManualConfig
{
    // In-process and short, so bench/run-policy.sh finishes in a few minutes on a shared 2-core machine.
    public PolicyBenchmarkConfig()
    {
        AddJob(Job.Default
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithLaunchCount(1)
            .WithWarmupCount(3)
            .WithIterationCount(10)
            .WithIterationTime(TimeInterval.FromMilliseconds(150)));
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumn(StatisticColumn.P95, StatisticColumn.Max);
    }
}
