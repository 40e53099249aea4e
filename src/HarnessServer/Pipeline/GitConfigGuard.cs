using HarnessServer.Policies;
using HarnessServer.Sandbox;

namespace HarnessServer.Pipeline;

/// <summary>
/// git runs programs that a repository's own configuration names under names the agent chooses
/// (<c>filter.&lt;name&gt;.clean/smudge/process</c>, <c>diff.&lt;name&gt;.command/textconv</c>,
/// <c>merge.&lt;name&gt;.driver</c>, <c>diff.external</c>, <c>!</c> aliases, and whatever an <c>include</c> brings in).
/// The sandbox switches off the ones with fixed names (hooks, fsmonitor, pager, editor...), but these cannot be
/// switched off from outside, and the agent can write <c>.git/config</c>. So a shell line that runs git in a workspace
/// whose repository configuration names such a program is denied, unless the rule that allowed it has no
/// <c>command</c> matcher (the admin allowed every line). Conservative: the configuration is read as text, and a
/// section or key it cannot tell apart is taken as running code.
/// </summary>
internal static class GitConfigGuard
{
    // The repositories git finds from the lines an agent writes: the workspace's and up to two folders below it.
    private static readonly string[] ConfigPatterns = [".git/config", "*/.git/config", "*/*/.git/config"];

    /// <summary>Why <paramref name="decision"/> must become a deny, or null when it stands.</summary>
    public static string? Refusal(PolicyDecision decision, string line, Workspace workspace)
    {
        if (decision.Effect == PolicyEffect.Deny || decision.DecidedBy.Rule is not { } rule || !rule.Args.ContainsKey("command")
            || !RunsGit(line))
        {
            return null;
        }

        foreach (var pattern in ConfigPatterns)
        {
            foreach (var path in workspace.Glob("", pattern) ?? [])
            {
                string text;
                try
                {
                    text = workspace.Read(path).Content;
                }
                catch (SandboxException)
                {
                    continue;
                }

                if (CodeRunningKey(text) is { } key)
                {
                    return $"the repository configuration {path} names a program git would run ({key}), which no rule with a command " +
                        "matcher can admit; remove it, or have an admin allow this line with a rule without a command matcher";
                }
            }
        }

        return null;
    }

    private static bool RunsGit(string line) =>
        ShellLine.Words(line) is not { } commands
        || commands.Any(words => words.Count > 0 && (words[0] == "git" || words[0].EndsWith("/git", StringComparison.Ordinal)));

    /// <summary>The first <c>section.key</c> of <paramref name="config"/> that makes git run a program it names.</summary>
    internal static string? CodeRunningKey(string config)
    {
        var section = "";
        foreach (var raw in config.ReplaceLineEndings("\n").Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] is '#' or ';')
            {
                continue;
            }

            if (line[0] == '[')
            {
                var end = line.IndexOf(']', StringComparison.Ordinal);
                var header = (end < 0 ? line[1..] : line[1..end]).Trim();
                var space = header.IndexOfAny([' ', '\t', '"']);
                section = (space < 0 ? header : header[..space]).ToLowerInvariant();
                var sub = space < 0 ? "" : header[space..].Trim().Trim('"');
                // [section.sub] is the old spelling of [section "sub"].
                if (space < 0 && section.IndexOf('.', StringComparison.Ordinal) is var dot and > 0)
                {
                    sub = section[(dot + 1)..];
                    section = section[..dot];
                }

                section = sub.Length > 0 ? $"{section}.{sub}" : section;
                if (section is "include" || section.StartsWith("includeif", StringComparison.Ordinal))
                {
                    return $"[{header}]";
                }

                line = end < 0 ? "" : line[(end + 1)..].Trim();
                if (line.Length == 0)
                {
                    continue;
                }
            }

            var equals = line.IndexOf('=', StringComparison.Ordinal);
            var key = (equals < 0 ? line : line[..equals]).Trim().ToLowerInvariant();
            var value = equals < 0 ? "" : line[(equals + 1)..].Trim().Trim('"');
            var top = section.Split('.', 2)[0];
            var named = section.Contains('.', StringComparison.Ordinal);
            var runs = (top, key) switch
            {
                ("filter", "clean" or "smudge" or "process") when named => true,
                ("diff", "command" or "textconv") when named => true,
                ("diff", "external") => true,
                ("merge", "driver") when named => true,
                ("alias", _) => value.StartsWith('!'),
                _ => false,
            };
            if (runs)
            {
                return $"{section}.{key}";
            }
        }

        return null;
    }
}
