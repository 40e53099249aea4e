using HarnessServer.Policies;

namespace HarnessServer.Tests.Policies;

public sealed class PolicyParserTests
{
    [Fact]
    public void Parses_rules_with_single_and_listed_globs()
    {
        var result = PolicyParser.Parse("""
            default: ask
            rules:
              - tool: shell.exec
                effect: allow
                args:
                  command: ["git *", "dotnet test*"]
                  timeoutSeconds: 5
              - tool: "fs.*"
                effect: deny
                args: { path: "secrets/**" }
                locked: true
                reason: secrets stay put
            """, PolicyLevel.Org, "org.yaml");

        var document = Assert.IsType<PolicyDocument>(result.Document);
        Assert.Equal(PolicyEffect.Ask, document.Default);
        Assert.Equal(["git *", "dotnet test*"], document.Rules[0].Args["command"]);
        Assert.Equal(["5"], document.Rules[0].Args["timeoutSeconds"]);
        Assert.True(document.Rules[1].Locked);
        Assert.Equal("secrets stay put", document.Rules[1].Reason);
    }

    [Fact]
    public void Parses_a_json_body()
    {
        var result = PolicyParser.Parse(
            "{\n\t\"default\": \"deny\",\n\t\"rules\": [\n\t\t{\"tool\":\"fs.read\",\"effect\":\"allow\",\"args\":{\"path\":[\"src/**\",\"docs/*\"]}},\n\t\t{\"tool\": \"http.fetch\", \"effect\": \"deny\", \"locked\": true}\n\t]\n}",
            PolicyLevel.Org,
            "org.json");

        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        Assert.Equal(2, result.Document!.Rules.Count);
        Assert.Equal(["src/**", "docs/*"], result.Document.Rules[0].Args["path"]);
        Assert.True(result.Document.Rules[1].Locked);
    }

    [Fact]
    public void Parses_json_escapes_nulls_and_booleans()
    {
        var result = PolicyParser.Parse(
            "{\"rules\":[{\"tool\":\"fs.read\",\"effect\":\"allow\",\"reason\":\"a\\/b \\u00e9\",\"locked\":false},{\"tool\":\"fs.list\",\"effect\":\"ask\",\"reason\":null}]}",
            PolicyLevel.Team,
            "team.json");

        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        Assert.Equal("a/b \u00e9", result.Document!.Rules[0].Reason);
        Assert.Null(result.Document.Rules[1].Reason);
    }

    [Theory]
    [InlineData("")]
    [InlineData("# only a comment\n")]
    [InlineData("rules: []")]
    [InlineData("rules:")]
    public void Accepts_empty_policies(string text)
    {
        var result = PolicyParser.Parse(text, PolicyLevel.Team, "t.yaml");

        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        Assert.Empty(result.Document!.Rules);
    }

    [Theory]
    [InlineData("rules:\n  - tool: fs.read\n    effect: allow\n    efect: deny\n", 4, 5, "unknown key 'efect'; allowed keys are tool, effect, args, locked, reason, approvers, quorum, self, expires")]
    [InlineData("defaults: deny\n", 1, 1, "unknown key 'defaults'; allowed keys are default, rules")]
    [InlineData("rules:\n  - tool: fs.read\n    effect: permit\n", 3, 13, "unknown effect 'permit': use allow, ask or deny")]
    [InlineData("default: allow\n", 1, 10, "default must be deny or ask")]
    [InlineData("default: maybe\n", 1, 10, "unknown default 'maybe': use deny or ask")]
    [InlineData("rules:\n  - tool: \"fs.[read\"\n    effect: allow\n", 2, 11, "unbalanced '['")]
    [InlineData("rules:\n  - tool: \"\"\n    effect: allow\n", 2, 11, "empty glob")]
    [InlineData("rules:\n  - tool: fs.read\n    effect: allow\n    args: { path: \"src/***\" }\n", 4, 19, "3 '*' in a row")]
    [InlineData("rules:\n  - tool: fs.read\n    effect: allow\n    args: { path: { a: b } }\n", 4, 19, "rules[0].args.path: a glob must be a string, not a mapping")]
    [InlineData("rules:\n  - tool: fs.read\n    effect: allow\n    args: { path: [a, [b]] }\n", 4, 23, "rules[0].args.path[1]: a glob must be a string, not a list")]
    [InlineData("rules:\n  - tool: fs.read\n    effect: allow\n    args: { path: [] }\n", 4, 19, "empty list matches nothing")]
    [InlineData("rules:\n  - tool: fs.read\n    effect: allow\n    args: [path]\n", 4, 11, "a mapping from argument name")]
    [InlineData("rules:\n  - effect: allow\n", 2, 5, "rules[0]: missing tool: every rule needs tool and effect")]
    [InlineData("rules:\n  - tool: fs.read\n", 2, 5, "rules[0]: missing effect")]
    [InlineData("rules:\n  - tool: fs.read\n    effect: allow\n    locked: maybe\n", 4, 13, "is not a boolean")]
    [InlineData("rules:\n  - tool: [fs.read]\n    effect: allow\n", 2, 11, "expected a string, not a list")]
    [InlineData("rules: fs.read\n", 1, 8, "'rules' is a list of rules")]
    [InlineData("- tool: fs.read\n", 1, 1, "a policy is a mapping")]
    [InlineData("rules:\n  - tool: a\n    tool: b\n    effect: allow\n", 3, 5, "Duplicate key tool")]
    [InlineData("rules: [\n", 2, 1, "not valid YAML or JSON")]
    [InlineData("{\"rules\": [{\"tool\": \"fs.read\" \"effect\": \"allow\"}]}", 1, 31, "not valid YAML or JSON")]
    [InlineData("rules: []\n---\nrules: []\n", 3, 1, "one document")]
    public void Reports_errors_with_line_and_column(string text, int line, int column, string message)
    {
        var result = PolicyParser.Parse(text, PolicyLevel.Org, "org.yaml");

        Assert.False(result.IsValid);
        var error = Assert.Single(result.Errors, e => e.Message.Contains(message));
        Assert.Equal("org.yaml", error.Source);
        Assert.Equal((line, column), (error.Line, error.Column));
    }

    [Theory]
    [InlineData("team")]
    [InlineData("user")]
    public void Refuses_locked_rules_and_default_outside_org(string levelName)
    {
        var level = levelName == "team" ? PolicyLevel.Team : PolicyLevel.User;
        var result = PolicyParser.Parse("default: ask\nrules:\n  - tool: fs.read\n    effect: deny\n    locked: true\n", level, "x.yaml");

        Assert.False(result.IsValid);
        Assert.Contains(result.Errors, e => e is { Line: 1, Column: 10 } && e.Message.Contains("'default' is only allowed in the org policy"));
        Assert.Contains(result.Errors, e => e is { Line: 5, Column: 13 } && e.Message.Contains("only org rules can be locked"));
    }

    [Fact]
    public void Accepts_unlocked_rules_outside_org()
    {
        Assert.True(PolicyParser.Parse("rules:\n  - tool: fs.read\n    effect: deny\n    locked: false\n", PolicyLevel.User, "u.yaml").IsValid);
    }

    [Fact]
    public void Reports_every_error_not_only_the_first()
    {
        var result = PolicyParser.Parse("rules:\n  - tool: fs.read\n    effect: nope\n  - tool: \"[\"\n    effect: allow\n", PolicyLevel.Org, "org.yaml");

        Assert.Equal([3, 4], result.Errors.Select(e => e.Line));
    }
}
