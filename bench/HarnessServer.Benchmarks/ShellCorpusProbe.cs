using System.Diagnostics;
using HarnessServer.Policies;

namespace HarnessServer.Benchmarks;

/// <summary>
/// Decision time for every line of the shell corpus (<c>tests/HarnessServer.Tests/Policies/shell-corpus.tsv</c>) under
/// its policy plus the 1,000-rule synthetic tenant, warm, parser included: each line is decided 2,000 times after a
/// warm-up and every decision is timed. The baselines, measured in the same run the same way, are one plain simple
/// command (<c>git status</c>) and an <c>fs.write</c> decision.
/// </summary>
internal static class ShellCorpusProbe
{
    private const int Iterations = 2_000;

    public static void Run(string corpusFolder)
    {
        var lines = File.ReadLines(Path.Combine(corpusFolder, "shell-corpus.tsv"))
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l.Split('\t', 2)[1])
            .ToArray();
        var corpusPolicy = PolicyParser.Parse(File.ReadAllText(Path.Combine(corpusFolder, "shell-corpus-policy.yaml")), PolicyLevel.Org, "corpus.yaml");
        var set = PolicyWorkload.Create(1_000);
        set = set with { Org = set.Org with { Rules = [.. set.Org.Rules, .. corpusPolicy.Document!.Rules] } };
        var ruleCount = set.Org.Rules.Count + set.Teams.Values.Sum(t => t.Rules.Count) + set.Users.Values.Sum(u => u.Rules.Count);
        var resolver = PolicyCompiler.Compile(set).For(PolicyWorkload.User, PolicyWorkload.Teams);

        var corpus = Measure(resolver, "shell.exec", [.. lines.Select(l => new Dictionary<string, string?> { ["command"] = l })]);
        var single = Measure(resolver, "shell.exec", [new Dictionary<string, string?> { ["command"] = "git status" }]);
        var write = Measure(resolver, "fs.write", [new Dictionary<string, string?> { ["path"] = "src/app/../lib/Program.cs" }]);

        Console.WriteLine($"{lines.Length} corpus lines, {ruleCount:N0} rules in the tenant, {Iterations:N0} timed decisions per line.");
        Console.WriteLine();
        Console.WriteLine("| decision | p50 | p99 | p99.9 | max | allocated per decision |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: |");
        Print("every corpus line (target p99 < 20 µs)", corpus);
        Print("baseline: `git status`", single);
        Print("baseline: `fs.write` path", write);
    }

    private sealed record Timings(long[] Sorted, double AllocatedPerCall);

    private static Timings Measure(PolicyResolver resolver, string tool, Dictionary<string, string?>[] calls)
    {
        for (var round = 0; round < 200; round++)
        {
            foreach (var call in calls)
            {
                resolver.Decide(tool, call, "/workspace");
            }
        }

        var timings = new long[calls.Length * Iterations];
        var n = 0;
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var round = 0; round < Iterations; round++)
        {
            foreach (var call in calls)
            {
                var start = Stopwatch.GetTimestamp();
                resolver.Decide(tool, call, "/workspace");
                timings[n++] = Stopwatch.GetTimestamp() - start;
            }
        }

        var allocated = (GC.GetAllocatedBytesForCurrentThread() - before) / (double)timings.Length;
        Array.Sort(timings);
        return new Timings(timings, allocated);
    }

    private static void Print(string name, Timings t) =>
        Console.WriteLine($"| {name} | {Ns(t.Sorted, 0.5)} | {Ns(t.Sorted, 0.99)} | {Ns(t.Sorted, 0.999)} | {Ns(t.Sorted, 1.0)} | {t.AllocatedPerCall:N0} B |");

    private static string Ns(long[] sorted, double quantile) =>
        $"{sorted[Math.Min(sorted.Length - 1, (int)(quantile * sorted.Length))] * 1e9 / Stopwatch.Frequency:N0} ns";
}
