using HarnessServer.Policies;

namespace HarnessServer.Benchmarks;

/// <summary>
/// The baseline: every rule of the tenant checked on every call (applicability, tool glob, arguments), with the
/// same resolution order. Globs are precompiled so the comparison measures the scan, not glob parsing.
/// </summary>
internal sealed class NaiveLinearScan
{
    private sealed record Entry(PolicyLevel Level, string Owner, PolicyGlob Tool, (string Name, PolicyGlob[] Globs)[] Args, PolicyEffect Effect, bool Locked);

    private readonly Entry[] _entries;
    private readonly PolicyEffect _default;

    public NaiveLinearScan(PolicySet set)
    {
        _default = set.Org.Default ?? PolicyEffect.Deny;
        _entries =
        [
            .. Entries(set.Org, ""),
            .. set.Teams.SelectMany(t => Entries(t.Value, t.Key)),
            .. set.Users.SelectMany(u => Entries(u.Value, u.Key)),
        ];
    }

    private static IEnumerable<Entry> Entries(PolicyDocument document, string owner) =>
        document.Rules.Select(r => new Entry(
            document.Level,
            owner,
            PolicyGlob.Parse(r.Tool),
            [.. r.Args.Select(a => (a.Key, a.Value.Select(PolicyGlob.Parse).ToArray()))],
            r.Effect,
            r.Locked));

    public PolicyEffect Decide(string user, string[] teams, string tool, IReadOnlyDictionary<string, string?> args)
    {
        Span<int> best = [-1, -1, -1, -1];
        foreach (var entry in _entries)
        {
            var applies = entry.Level switch
            {
                PolicyLevel.Org => true,
                PolicyLevel.Team => Array.IndexOf(teams, entry.Owner) >= 0,
                _ => entry.Owner == user,
            };
            if (!applies || !entry.Tool.IsMatch(tool) || !ArgumentsMatch(entry, args))
            {
                continue;
            }

            var group = entry.Locked ? 0 : entry.Level switch { PolicyLevel.User => 1, PolicyLevel.Team => 2, _ => 3 };
            best[group] = Math.Max(best[group], (int)entry.Effect);
        }

        foreach (var effect in best)
        {
            if (effect >= 0)
            {
                return (PolicyEffect)effect;
            }
        }

        return _default;
    }

    private static bool ArgumentsMatch(Entry entry, IReadOnlyDictionary<string, string?> args)
    {
        foreach (var (name, globs) in entry.Args)
        {
            if (!args.TryGetValue(name, out var value) || value is null || !AnyMatches(globs, value))
            {
                return false;
            }
        }

        return true;
    }

    private static bool AnyMatches(PolicyGlob[] globs, string value)
    {
        foreach (var glob in globs)
        {
            if (glob.IsMatch(value))
            {
                return true;
            }
        }

        return false;
    }
}
