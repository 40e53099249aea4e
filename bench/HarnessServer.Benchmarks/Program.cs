using BenchmarkDotNet.Running;
using HarnessServer.Benchmarks;

// `latency` prints per-call percentiles, `shell-corpus <folder>` the shell corpus's; anything else goes to
// BenchmarkDotNet (e.g. --filter '*Policy*').
if (args is ["latency"])
{
    LatencyProbe.Run();
    return;
}

if (args is ["shell-corpus", var folder])
{
    ShellCorpusProbe.Run(folder);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(PolicyDecisionBenchmarks).Assembly).Run(args);
