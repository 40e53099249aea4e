using HarnessServer.Policies;

namespace HarnessServer.Benchmarks;

/// <summary>
/// A synthetic tenant: rules spread over the org (10%), 20 teams (30%) and 500 users (60%), mostly on a few
/// hundred registry tools, some on built-ins and a few with wildcard tool globs, so the index has real work.
/// </summary>
internal static class PolicyWorkload
{
    public const string User = "user7";
    public static readonly string[] Teams = ["team3", "team11"];

    private static readonly string[] BuiltIns =
        ["fs.read", "fs.write", "fs.list", "fs.search", "shell.exec", "http.fetch", "memory.save", "memory.search"];

    private static readonly string[] Paths = ["src/**", "docs/*", "**/*.cs", "secrets/**", "tests/**/fixtures/*"];
    private static readonly string[] Commands = ["git *", "dotnet test*", "rm *", "ls*", "cat *"];

    public static PolicySet Create(int ruleCount)
    {
        var random = new Random(42);
        var org = new List<PolicyRule>
        {
            new("fs.write", PolicyEffect.Ask, Args("path", "**")),
            new("http.fetch", PolicyEffect.Deny, PolicyRule.NoArgs, Locked: true, Reason: "no egress"),
        };
        var teams = Enumerable.Range(0, 20).ToDictionary(i => $"team{i}", _ => new List<PolicyRule>());
        var users = Enumerable.Range(0, 500).ToDictionary(i => $"user{i}", _ => new List<PolicyRule>());
        teams["team3"].Add(new("fs.write", PolicyEffect.Allow, Args("path", "src/**")));
        teams["team3"].Add(new("shell.exec", PolicyEffect.Allow, Args("command", "git *", "dotnet test*")));
        for (var i = 0; i < ruleCount; i++)
        {
            var rule = RandomRule(random);
            switch (i % 10)
            {
                case 0:
                    org.Add(rule with { Locked = rule.Effect == PolicyEffect.Deny && random.Next(10) == 0 });
                    break;
                case 1 or 2 or 3:
                    teams[$"team{random.Next(20)}"].Add(rule);
                    break;
                default:
                    users[$"user{random.Next(500)}"].Add(rule);
                    break;
            }
        }

        return new PolicySet(
            "bench",
            new PolicyDocument(PolicyLevel.Org, "bench/org.yaml", PolicyEffect.Deny, org),
            teams.ToDictionary(t => t.Key, t => new PolicyDocument(PolicyLevel.Team, $"bench/teams/{t.Key}.yaml", null, t.Value)),
            users.ToDictionary(u => u.Key, u => new PolicyDocument(PolicyLevel.User, $"bench/users/{u.Key}.yaml", null, u.Value)));
    }

    private static PolicyRule RandomRule(Random random)
    {
        var effect = (PolicyEffect)random.Next(3);
        var pick = random.Next(100);
        if (pick < 5)
        {
            return new PolicyRule(random.Next(2) == 0 ? "fs.*" : $"tool{random.Next(300)}.*", effect, PolicyRule.NoArgs);
        }

        if (pick < 35)
        {
            var tool = BuiltIns[random.Next(BuiltIns.Length)];
            return tool switch
            {
                "shell.exec" => new PolicyRule(tool, effect, Args("command", Commands[random.Next(Commands.Length)])),
                _ when tool.StartsWith("fs.", StringComparison.Ordinal) => new PolicyRule(tool, effect, Args("path", Paths[random.Next(Paths.Length)])),
                _ => new PolicyRule(tool, effect, PolicyRule.NoArgs),
            };
        }

        var args = random.Next(3) == 0 ? Args("mode", "fast*") : PolicyRule.NoArgs;
        return new PolicyRule($"tool{random.Next(300)}.run", effect, args);
    }

    private static Dictionary<string, IReadOnlyList<string>> Args(string name, params string[] globs) =>
        new(StringComparer.Ordinal) { [name] = globs };
}
