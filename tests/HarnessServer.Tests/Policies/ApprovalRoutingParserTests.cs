using HarnessServer.Policies;

namespace HarnessServer.Tests.Policies;

/// <summary>The routing keys of an ask rule: who approves, how many, the requester, for how long.</summary>
public sealed class ApprovalRoutingParserTests
{
    private const string Ask = "rules:\n  - tool: fs.write\n    effect: ask\n";

    [Fact]
    public void Parses_approvers_quorum_self_and_expiry_of_an_ask_rule()
    {
        var document = PolicyTesting.Parse(Ask + """
                approvers: ["team:security", "role:harness.admin", "team:security"]
                quorum: 2
                self: allow
                expires: 1h30m
            """, PolicyLevel.Org);

        var routing = Assert.IsType<ApprovalRouting>(document.Rules[0].Routing);
        Assert.Equal(["team:security", "role:harness.admin"], routing.Approvers);
        Assert.Equal(2, routing.Quorum);
        Assert.True(routing.SelfApproval);
        Assert.Equal(TimeSpan.FromMinutes(90), routing.Expires);
    }

    [Fact]
    public void An_ask_rule_without_routing_keys_means_what_it_always_meant()
    {
        var document = PolicyTesting.Parse(Ask, PolicyLevel.Org);

        Assert.Null(document.Rules[0].Routing);
        var compiled = PolicyTesting.Compile(Ask);
        var decision = compiled.For("maria", []).Decide("fs.write", PolicyTesting.Path("a.txt"));
        Assert.Equal(ApprovalRouting.Default, decision.Routing);
        Assert.Equal((0, 1, false, (TimeSpan?)null), (ApprovalRouting.Default.Approvers.Count, ApprovalRouting.Default.Quorum, ApprovalRouting.Default.SelfApproval, ApprovalRouting.Default.Expires));
    }

    [Theory]
    [InlineData("    approvers: team:security\n", 4, 16, "rules[0].approvers: a list of 'team:<name>' or 'role:<name>' entries, not the scalar 'team:security'")]
    [InlineData("    approvers: []\n", 4, 16, "an empty list names no one who could approve")]
    [InlineData("    approvers: [\"group:x\"]\n", 4, 17, "rules[0].approvers[0]: 'group:x' is not 'team:<name>' or 'role:<name>'")]
    [InlineData("    approvers: [\"team:\"]\n", 4, 17, "'team:' is not 'team:<name>'")]
    [InlineData("    approvers: [\"team: x\"]\n", 4, 17, "no surrounding spaces")]
    [InlineData("    approvers: [[\"team:x\"]]\n", 4, 17, "rules[0].approvers[0]: an entry is 'team:<name>' or 'role:<name>', not a list")]
    [InlineData("    quorum: 0\n", 4, 13, "rules[0].quorum: '0' is not a number of distinct approvers from 1 to 10")]
    [InlineData("    quorum: 11\n", 4, 13, "'11' is not a number of distinct approvers from 1 to 10")]
    [InlineData("    quorum: two\n", 4, 13, "'two' is not a number")]
    [InlineData("    quorum: -1\n", 4, 13, "'-1' is not a number")]
    [InlineData("    self: yes\n", 4, 11, "rules[0].self: 'yes' is not allow or deny")]
    [InlineData("    expires: 10\n", 4, 14, "rules[0].expires: '10' is not a duration from 1s to 30d")]
    [InlineData("    expires: 31d\n", 4, 14, "'31d' is not a duration from 1s to 30d")]
    [InlineData("    expires: 0s\n", 4, 14, "'0s' is not a duration")]
    [InlineData("    expires: 30m1h\n", 4, 14, "'30m1h' is not a duration")]
    [InlineData("    expires: 1w\n", 4, 14, "'1w' is not a duration")]
    [InlineData("    quorom: 2\n", 4, 5, "unknown key 'quorom'")]
    public void Reports_bad_routing_keys_with_line_and_column(string key, int line, int column, string message)
    {
        var result = PolicyParser.Parse(Ask + key, PolicyLevel.Org, "org.yaml");

        Assert.False(result.IsValid);
        var error = Assert.Single(result.Errors, e => e.Message.Contains(message));
        Assert.Equal((line, column), (error.Line, error.Column));
    }

    [Theory]
    [InlineData("allow", "approvers: [\"team:security\"]", "approvers")]
    [InlineData("deny", "quorum: 2", "quorum")]
    [InlineData("allow", "self: allow", "self")]
    [InlineData("deny", "expires: 1h", "expires")]
    public void Refuses_routing_keys_on_rules_that_do_not_ask(string effect, string key, string name)
    {
        var result = PolicyParser.Parse($"rules:\n  - tool: fs.write\n    effect: {effect}\n    {key}\n", PolicyLevel.Org, "org.yaml");

        var error = Assert.Single(result.Errors);
        Assert.Equal(4, error.Line);
        Assert.Contains($"rules[0].{name}: only an ask rule says who approves; this rule's effect is {effect}", error.Message);
    }
}
