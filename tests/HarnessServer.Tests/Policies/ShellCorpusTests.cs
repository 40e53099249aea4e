using HarnessServer.Policies;
using static HarnessServer.Tests.Policies.PolicyTesting;

namespace HarnessServer.Tests.Policies;

/// <summary>
/// Lines coding agents write, each with the effect it gets under <see cref="ShellCorpus.OrgPolicy"/>: ordinary
/// work (quoted messages, pipes, chains, globs) is allowed by the rules an admin would write; deleting asks; what
/// the policy does not name, runs other code or uses shell syntax the harness cannot decide exactly is not allowed.
/// </summary>
public sealed class ShellCorpusTests
{
    private const string A = "allow";

    public static TheoryData<string, string> Lines
    {
        get
        {
            var lines = new TheoryData<string, string>();
            foreach (var (line, effect) in ShellCorpus.Lines())
            {
                lines.Add(line, effect);
            }

            return lines;
        }
    }

    [Fact]
    public void The_corpus_has_at_least_150_lines_and_mostly_ordinary_work()
    {
        Assert.True(Lines.Count >= 150, $"{Lines.Count} lines");
        Assert.True(Lines.Count(l => (string)l[1] == A) >= 150);
    }

    [Theory]
    [MemberData(nameof(Lines))]
    public void Line_gets_its_expected_effect(string line, string expected)
    {
        var decision = ShellCorpus.Resolver.Decide("shell.exec", Command(line), "/workspace");

        Assert.Equal(expected, decision.Effect.ToString().ToLowerInvariant());
    }

    [Theory]
    [MemberData(nameof(Lines))]
    public void Every_line_runs_under_an_allow_all_tenant(string line, string expected)
    {
        _ = expected;

        Assert.Equal(PolicyEffect.Allow, ShellCorpus.AllowAll.Decide("shell.exec", Command(line), "/workspace").Effect);
    }

    [Theory]
    [InlineData("git commit -m \"fix the bug\"", new[] { "git", "commit", "-m", "fix the bug" })]
    [InlineData("echo 'a  b' \"c'd\" e\\ f", new[] { "echo", "a  b", "c'd", "e f" })]
    [InlineData("grep -rn \"foo bar\" src", new[] { "grep", "-rn", "foo bar", "src" })]
    [InlineData("echo a'b'\"c\"d", new[] { "echo", "abcd" })]
    [InlineData("echo '' \"\"", new[] { "echo", "", "" })]
    [InlineData("find . -exec echo {} \\;", new[] { "find", ".", "-exec", "echo", "{}", ";" })]
    [InlineData("echo 'a;b|c&&d'", new[] { "echo", "a;b|c&&d" })]
    public void Quoted_words_are_words(string line, string[] words)
    {
        var commands = ShellLine.Words(line);

        Assert.NotNull(commands);
        Assert.Equal(words, Assert.Single(commands));
    }

    [Theory]
    [InlineData("\"echo\" hi", "command name contains quotes")]
    [InlineData("ec\\ho hi", "command name contains quotes")]
    [InlineData("echo \"$HOME\"", "double quotes hold")]
    [InlineData("echo \"`id`\"", "double quotes hold")]
    [InlineData("echo 'open", "not closed")]
    [InlineData("echo hi\\", "ends with a backslash")]
    [InlineData("echo hi \\\n rm x", "newline")]
    public void Quotes_the_shell_would_expand_make_the_line_unclassifiable(string line, string because)
    {
        var decision = ShellCorpus.Resolver.Decide("shell.exec", Command(line), "/workspace");

        Assert.True(decision.Unclassifiable);
        Assert.Contains(because, decision.Reason);
        Assert.Equal(PolicyEffect.Deny, decision.Effect);
    }

    [Theory]
    [InlineData("git -c core.fsmonitor=x status", "git -c core.fsmonitor=x status", "-c", "git -c")]
    [InlineData("ls && sh -c 'rm x'", "sh -c 'rm x'", "sh", "sh")]
    [InlineData("tar -cf a.tar --to-command=x f", "tar -cf a.tar --to-command=x f", "--to-command=x", "tar")]
    [InlineData("sed -n 1e\\ id f", "sed -n 1e\\ id f", "1e\\ id", "sed")]
    [InlineData("timeout 5 sh -c id", "timeout 5 sh -c id", "sh", "sh")]
    [InlineData("git evil", "git evil", "evil", "git")]
    public void Explanation_names_the_simple_command_and_the_word_that_decided(string line, string command, string word, string form)
    {
        var decision = ShellCorpus.Resolver.Decide("shell.exec", Command(line), "/workspace");

        Assert.Equal(PolicyEffect.Deny, decision.Effect);
        Assert.Equal(command, decision.SimpleCommand);
        Assert.Equal(word, decision.Word);
        Assert.Contains($"decided by the simple command '{command}' at the word '{word}'", decision.Explanation);
        Assert.Contains($"({form}: ", decision.Explanation);
    }

    [Fact]
    public void Explanation_of_an_allowed_line_names_the_deciding_program()
    {
        var decision = ShellCorpus.Resolver.Decide("shell.exec", Command("git status && rm x"), "/workspace");

        Assert.Equal(PolicyEffect.Ask, decision.Effect);
        Assert.Equal("rm x", decision.SimpleCommand);
        Assert.Equal("rm", decision.Word);
        Assert.DoesNotContain("only a rule naming", decision.Explanation);
    }

    [Theory]
    [InlineData("sh build.sh", "sh build.sh", "s*")]
    [InlineData("make test", "make test", "m*")]
    [InlineData("git -c core.quotepath=off status", "git -c *", "git *")]
    [InlineData("git --no-pager -c core.quotepath=off status", "git * -c *", "git --no-pager *")]
    [InlineData("python3 -c 'print(1)'", "python3 -c *", "python3 *")]
    [InlineData("find . -name x -delete", "find * -delete", "find *")]
    [InlineData("tar -xf a.tar --to-command=cat", "tar * --to-command=*", "tar -xf *")]
    [InlineData("xargs grep foo", "xargs grep *", "x*")]
    public void A_rule_naming_the_form_admits_it_and_a_broad_rule_does_not(string line, string naming, string broad)
    {
        var named = Compile($$"""
            default: deny
            rules:
              - tool: shell.exec
                effect: allow
                args: { command: ["{{naming}}", "grep *"] }
            """).For("u", []);
        var onlyBroad = Compile($$"""
            default: deny
            rules:
              - tool: shell.exec
                effect: allow
                args: { command: ["{{broad}}", "*"] }
            """).For("u", []);

        Assert.Equal(PolicyEffect.Allow, named.Decide("shell.exec", Command(line)).Effect);
        Assert.Equal(PolicyEffect.Deny, onlyBroad.Decide("shell.exec", Command(line)).Effect);
    }

    [Fact]
    public void A_shell_rule_without_a_command_matcher_runs_every_line()
    {
        var resolver = Compile("""
            default: deny
            rules:
              - tool: shell.exec
                effect: allow
            """).For("u", []);

        Assert.Equal(PolicyEffect.Allow, resolver.Decide("shell.exec", Command("sh build.sh")).Effect);
        Assert.Equal(PolicyEffect.Allow, resolver.Decide("shell.exec", Command("npm test 2>&1 | tail")).Effect);
    }

    [Fact]
    public void An_unclassifiable_line_still_meets_a_deny_beside_an_unconstrained_allow()
    {
        var resolver = Compile("""
            default: deny
            rules:
              - tool: "*"
                effect: allow
              - tool: shell.exec
                effect: deny
                args: { command: "rm *" }
            """).For("u", []);

        Assert.Equal(PolicyEffect.Allow, resolver.Decide("shell.exec", Command("sh -c 'make'")).Effect);
        Assert.Equal(PolicyEffect.Deny, resolver.Decide("shell.exec", Command("ls > x")).Effect);
        Assert.Equal(PolicyEffect.Deny, resolver.Decide("shell.exec", Command("timeout 5 rm x")).Effect);
    }
}
