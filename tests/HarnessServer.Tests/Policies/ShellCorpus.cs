using HarnessServer.Policies;
using static HarnessServer.Tests.Policies.PolicyTesting;

namespace HarnessServer.Tests.Policies;

/// <summary>
/// The small policy set the shell corpus is decided under: what an admin would naturally allow a coding agent,
/// with asks for deleting and resetting and denies for network and destructive commands.
/// </summary>
internal static class ShellCorpus
{
    public static readonly string OrgPolicy = File.ReadAllText(System.IO.Path.Combine(AppContext.BaseDirectory, "Policies", "shell-corpus-policy.yaml"));

    /// <summary>The corpus file <c>shell-corpus.tsv</c> beside this file: each line with its expected effect.</summary>
    public static IEnumerable<(string Line, string Effect)> Lines() =>
        File.ReadLines(System.IO.Path.Combine(AppContext.BaseDirectory, "Policies", "shell-corpus.tsv"))
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l.Split('\t', 2))
            .Select(p => (p[1], p[0]));

    public static readonly PolicyResolver Resolver = Compile(OrgPolicy).For("agent", []);

    /// <summary>A tenant whose org allows every tool: the admin allowed everything, so every line runs.</summary>
    public static readonly PolicyResolver AllowAll = Compile("""
        default: deny
        rules:
          - tool: "*"
            effect: allow
        """).For("agent", []);
}
