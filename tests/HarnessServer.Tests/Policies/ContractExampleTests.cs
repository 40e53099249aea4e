using HarnessServer.Policies;
using static HarnessServer.Tests.Policies.PolicyTesting;

namespace HarnessServer.Tests.Policies;

/// <summary>The example policy of PRODUCT.md, "Policy files", resolves as the contract says.</summary>
public sealed class ContractExampleTests
{
    private const string Org = """
        # policies/acme/org.yaml — the tenant's organisation level
        default: deny            # effect when no rule matches: deny | ask
        rules:
          - tool: "fs.read"
            effect: allow
          - tool: "fs.write"
            effect: ask
            args: { path: "**" }
          - tool: "http.fetch"
            effect: deny
            locked: true         # no team or user rule can override this
            reason: "no egress from agents"
        """;

    private const string Platform = """
        # policies/acme/teams/platform.yaml — a team level
        rules:
          - tool: "shell.exec"
            effect: allow
            args: { command: ["git *", "dotnet test*"] }
          - tool: "fs.write"
            effect: allow
            args: { path: "src/**" }
        """;

    private const string GenerousUser = """
        rules:
          - tool: "http.fetch"
            effect: allow
          - tool: "*"
            effect: allow
        """;

    private static readonly CompiledPolicy Policy = Compile(
        Org,
        new Dictionary<string, string> { ["platform"] = Platform },
        new Dictionary<string, string> { ["alice"] = GenerousUser });

    private static readonly PolicyResolver PlatformMember = Policy.For("bob", ["platform"]);
    private static readonly PolicyResolver Outsider = Policy.For("carol", []);

    [Fact]
    public void Allows_fs_read_at_org_level()
    {
        var decision = Outsider.Decide("fs.read", Path("docs/readme.md"));

        Assert.Equal(PolicyEffect.Allow, decision.Effect);
        Assert.Equal(PolicyLevel.Org, decision.Level);
        Assert.Equal("acme/org.yaml", decision.Source);
        Assert.Equal(0, decision.Index);
    }

    [Fact]
    public void Allows_platform_team_to_write_under_src()
    {
        var decision = PlatformMember.Decide("fs.write", Path("src/app/Program.cs"));

        Assert.Equal(PolicyEffect.Allow, decision.Effect);
        Assert.Equal(PolicyLevel.Team, decision.Level);
        Assert.Equal("acme/teams/platform.yaml", decision.Source);
        Assert.Equal(1, decision.Index);
    }

    [Theory]
    [InlineData("README.md")]
    [InlineData("secrets/key")]
    [InlineData("src/../secrets/key")]
    public void Asks_platform_team_before_writing_outside_src(string path)
    {
        var decision = PlatformMember.Decide("fs.write", Path(path));

        Assert.Equal(PolicyEffect.Ask, decision.Effect);
        Assert.Equal(PolicyLevel.Org, decision.Level);
        Assert.Equal(1, decision.Index);
    }

    [Fact]
    public void Asks_outsiders_before_any_write()
    {
        Assert.Equal(PolicyEffect.Ask, Outsider.Decide("fs.write", Path("src/a.cs")).Effect);
    }

    [Fact]
    public void Denies_http_fetch_by_locked_org_rule_even_when_a_user_rule_allows_it()
    {
        var decision = Policy.For("alice", ["platform"]).Decide("http.fetch", Args(("url", "https://example.com")));

        Assert.Equal(PolicyEffect.Deny, decision.Effect);
        Assert.Equal(PolicyLevel.Org, decision.Level);
        Assert.Equal(2, decision.Index);
        Assert.Equal("no egress from agents", decision.Reason);
        Assert.True(decision.DecidedBy.Locked);
    }

    [Fact]
    public void Allows_git_status_for_platform_team()
    {
        var decision = PlatformMember.Decide("shell.exec", Command("git status"));

        Assert.Equal(PolicyEffect.Allow, decision.Effect);
        Assert.Equal(PolicyLevel.Team, decision.Level);
        Assert.Equal(0, decision.Index);
        Assert.Equal("git status", decision.SimpleCommand);
    }

    [Fact]
    public void Allows_git_glob_across_slashes_and_spaces()
    {
        Assert.Equal(PolicyEffect.Allow, PlatformMember.Decide("shell.exec", Command("git log src/a.txt")).Effect);
        Assert.Equal(PolicyEffect.Allow, PlatformMember.Decide("shell.exec", Command("dotnet test tests/X.csproj && git diff")).Effect);
    }

    [Fact]
    public void Denies_rm_rf_root_by_org_default()
    {
        var decision = PlatformMember.Decide("shell.exec", Command("rm -rf /"));

        Assert.Equal(PolicyEffect.Deny, decision.Effect);
        Assert.Null(decision.Index);
        Assert.Equal(PolicyLevel.Org, decision.Level);
        Assert.Equal("no rule matched; org default (deny)", decision.Reason);
    }

    [Fact]
    public void Names_the_simple_command_that_denied_a_chained_line()
    {
        var decision = PlatformMember.Decide("shell.exec", Command("git status && rm -rf / ; git log"));

        Assert.Equal(PolicyEffect.Deny, decision.Effect);
        Assert.Equal("rm -rf /", decision.SimpleCommand);
    }

    [Theory]
    [InlineData("../outside.txt")]
    [InlineData("/etc/passwd")]
    public void Never_allows_writing_outside_the_workspace(string path)
    {
        var decision = PlatformMember.Decide("fs.write", Path(path), "/ws/1");

        Assert.Equal(PolicyEffect.Deny, decision.Effect);
        Assert.True(decision.Unclassifiable);
        Assert.Contains("escapes the workspace", decision.Reason);
    }

    [Fact]
    public void Accepts_absolute_paths_beneath_the_workspace_root()
    {
        Assert.Equal(PolicyEffect.Allow, PlatformMember.Decide("fs.write", Path("/ws/1/src/a.cs"), "/ws/1").Effect);
    }

    [Fact]
    public void Denies_tools_no_rule_mentions_by_default()
    {
        Assert.Equal(PolicyEffect.Deny, Outsider.Decide("memory.save", Args(("namespace", "user"))).Effect);
    }

    [Fact]
    public void Matrix_lists_blanket_effect_and_rules_most_specific_level_first()
    {
        var matrix = PlatformMember.Matrix(["fs.read", "fs.write", "shell.exec", "http.fetch", "memory.save"]);
        var byTool = matrix.Tools.ToDictionary(t => t.Tool);

        Assert.Equal("allow", byTool["fs.read"].Effect);
        Assert.Equal("deny", byTool["fs.write"].Effect);
        Assert.Equal(["team", "org"], byTool["fs.write"].Rules.Select(r => r.Level));
        Assert.Equal(["src/**"], byTool["fs.write"].Rules[0].Args["path"]);
        Assert.Equal("deny", byTool["shell.exec"].Effect);
        Assert.Equal("deny", byTool["http.fetch"].Effect);
        Assert.True(byTool["http.fetch"].Rules.Single().Locked);
        Assert.Empty(byTool["memory.save"].Rules);
    }

    [Fact]
    public void Offers_tools_with_an_allow_or_ask_rule_and_hides_locked_denials()
    {
        Assert.True(PlatformMember.IsOffered("fs.write"));
        Assert.True(PlatformMember.IsOffered("shell.exec"));
        Assert.False(Outsider.IsOffered("shell.exec"));
        Assert.False(Policy.For("alice", []).IsOffered("http.fetch"));
        Assert.True(Policy.For("alice", []).IsOffered("memory.save"));
    }

    [Fact]
    public void Overlong_constrained_argument_is_never_allowed()
    {
        var decision = PlatformMember.Decide("fs.write", Path("src/" + new string('a', 70_000)));

        // The org default (deny) is stricter than every fs.write rule.
        Assert.Equal(PolicyEffect.Deny, decision.Effect);
        Assert.True(decision.Unclassifiable);
    }
}
