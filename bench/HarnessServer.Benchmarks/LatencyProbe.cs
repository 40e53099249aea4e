using System.Diagnostics;
using HarnessServer.Policies;

namespace HarnessServer.Benchmarks;

/// <summary>
/// Per-call latency percentiles, which BenchmarkDotNet does not give (it reports means of iterations): times a
/// million single warm decisions and thirty cold compiles, and prints a markdown table.
/// </summary>
internal static class LatencyProbe
{
    public static void Run()
    {
        Console.WriteLine("| rules | warm p50 | warm p99 | warm p99.9 | warm max | cold median | cold p95 | cold max |");
        Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var count in new[] { 10, 1_000, 10_000 })
        {
            var set = PolicyWorkload.Create(count);
            var args = new Dictionary<string, string?> { ["path"] = "src/app/../lib/Program.cs" };
            var resolver = PolicyCompiler.Compile(set).For(PolicyWorkload.User, PolicyWorkload.Teams);
            for (var i = 0; i < 200_000; i++)
            {
                resolver.Decide("fs.write", args, "/ws");
            }

            var warm = new long[1_000_000];
            for (var i = 0; i < warm.Length; i++)
            {
                var start = Stopwatch.GetTimestamp();
                resolver.Decide("fs.write", args, "/ws");
                warm[i] = Stopwatch.GetTimestamp() - start;
            }

            for (var i = 0; i < 3; i++)
            {
                PolicyCompiler.Compile(set).For(PolicyWorkload.User, PolicyWorkload.Teams).Decide("fs.write", args, "/ws");
            }

            var cold = new long[30];
            for (var i = 0; i < cold.Length; i++)
            {
                // A recompile follows a policy change, not another recompile: start each from a collected heap.
                GC.Collect();
                GC.WaitForPendingFinalizers();
                var start = Stopwatch.GetTimestamp();
                PolicyCompiler.Compile(set).For(PolicyWorkload.User, PolicyWorkload.Teams).Decide("fs.write", args, "/ws");
                cold[i] = Stopwatch.GetTimestamp() - start;
            }

            Array.Sort(warm);
            Array.Sort(cold);
            Console.WriteLine(
                $"| {count:N0} | {Ns(warm, 0.50)} | {Ns(warm, 0.99)} | {Ns(warm, 0.999)} | {Ns(warm, 1.0)} | {Ms(cold, 0.5)} | {Ms(cold, 0.95)} | {Ms(cold, 1.0)} |");
        }
    }

    private static long At(long[] sorted, double quantile) => sorted[Math.Min(sorted.Length - 1, (int)(quantile * sorted.Length))];

    private static string Ns(long[] sorted, double quantile) => $"{At(sorted, quantile) * 1e9 / Stopwatch.Frequency:N0} ns";

    private static string Ms(long[] sorted, double quantile) => $"{At(sorted, quantile) * 1e3 / Stopwatch.Frequency:N2} ms";
}
