using HarnessServer.Policies;

namespace HarnessServer.Tests.Policies;

/// <summary>Builds compiled policies from YAML for tests, failing loudly on a parse error.</summary>
internal static class PolicyTesting
{
    public static PolicyDocument Parse(string yaml, PolicyLevel level, string source = "test.yaml")
    {
        var result = PolicyParser.Parse(yaml, level, source);
        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        return result.Document!;
    }

    public static CompiledPolicy Compile(
        string org,
        IReadOnlyDictionary<string, string>? teams = null,
        IReadOnlyDictionary<string, string>? users = null) =>
        PolicyCompiler.Compile(new PolicySet(
            "acme",
            Parse(org, PolicyLevel.Org, "acme/org.yaml"),
            (teams ?? new Dictionary<string, string>()).ToDictionary(t => t.Key, t => Parse(t.Value, PolicyLevel.Team, $"acme/teams/{t.Key}.yaml")),
            (users ?? new Dictionary<string, string>()).ToDictionary(u => u.Key, u => Parse(u.Value, PolicyLevel.User, $"acme/users/{u.Key}.yaml"))));

    public static Dictionary<string, string?> Args(params (string Name, string? Value)[] args) =>
        args.ToDictionary(a => a.Name, a => a.Value);

    public static Dictionary<string, string?> Command(string command) => Args(("command", command));

    public static Dictionary<string, string?> Path(string path) => Args(("path", path));
}
