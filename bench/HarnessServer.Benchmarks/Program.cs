using BenchmarkDotNet.Running;
using HarnessServer.Benchmarks;

// `latency` prints per-call percentiles, `shell-corpus <folder>` the shell corpus's, `sandbox-start` sandbox start times; anything else goes to
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

if (args is ["sandbox-start"])
{
    await SandboxStartProbe.RunAsync();
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(PolicyDecisionBenchmarks).Assembly).Run(args);
