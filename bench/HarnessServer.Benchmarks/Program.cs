using BenchmarkDotNet.Running;
using HarnessServer.Benchmarks;

// `latency` prints per-call percentiles; anything else goes to BenchmarkDotNet (e.g. --filter '*Policy*').
if (args is ["latency"])
{
    LatencyProbe.Run();
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(PolicyDecisionBenchmarks).Assembly).Run(args);
