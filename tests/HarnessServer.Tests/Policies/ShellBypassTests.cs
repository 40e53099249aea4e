using HarnessServer.Policies;
using static HarnessServer.Tests.Policies.PolicyTesting;

namespace HarnessServer.Tests.Policies;

/// <summary>
/// Real shell tricks against an org that allows only <c>echo *</c> and <c>git *</c>: none may come out allowed.
/// Each line either smuggles another command past the allowed prefix or cannot be classified, and both must end
/// at the org default (nothing here is allowed by a rule, so the most restrictive effect is the default).
/// </summary>
public sealed class ShellBypassTests
{
    private static PolicyResolver Org(string fallback) => Compile($"""
        default: {fallback}
        rules:
          - tool: shell.exec
            effect: allow
            args: {"{"} command: ["echo *", "git *"] {"}"}
        """).For("mallory", []);

    private static readonly PolicyResolver DenyByDefault = Org("deny");
    private static readonly PolicyResolver AskByDefault = Org("ask");

    public static TheoryData<string> Attempts => new()
    {
        "echo hi && rm -rf /",
        "echo hi || rm -rf /",
        "echo hi; rm x",
        "echo hi ; rm x",
        "echo hi | sh",
        "echo hi | bash",
        "echo rm x | xargs rm",
        "echo $(rm x)",
        "echo `rm x`",
        "echo hi > /etc/passwd",
        "echo hi >> ~/.bashrc",
        "echo hi 2>&1",
        "echo hi &> out",
        "echo hi |& cat",
        "git log < /etc/shadow",
        "echo hi\nrm x",
        "echo hi\r\nrm x",
        "echo hi\rrm x",
        "(rm x)",
        "echo hi && (rm x)",
        "{ rm x; }",
        "x() { rm x; }; x",
        "echo hi &",
        "echo hi & rm x",
        "e\\cho hi",
        "\"rm\" x",
        "'echo' hi",
        "echo 'hi' ; rm x",
        "$CMD",
        "echo $HOME",
        "echo ${PATH}",
        "FOO=1 rm x",
        "PATH=. git status",
        "eval rm x",
        "exec rm x",
        "source evil.sh",
        ". evil.sh",
        "echo <(rm x)",
        "echo >(rm x)",
        "cat <<EOF",
        "git log <<< x",
        "env rm x",
        "env echo hi",
        "sudo rm x",
        "nohup rm x",
        "timeout 5 rm x",
        "nice rm x",
        "busybox rm x",
        "command rm x",
        "builtin echo hi",
        "bash -c rm",
        "sh -c rm",
        "zsh -c rm",
        "python3 -c print",
        "python -c import",
        "perl -e unlink",
        "node -e process.exit",
        "ruby -e exit",
        "find . -exec rm {} +",
        "find . -delete -exec rm",
        "echo hi\t&&\trm x",
        "echo hi\t;rm x",
        "echo hi\u000brm x",
        "echo hi\u0000rm x",
        "ec*o hi",
        "ech? hi",
        "[ -f x ]",
        "еcho hi",
        "ｅcho hi",
        "echo hi\u00a0&&\u00a0rm x",
        "echo hi\u200b; rm x",
        "echo hi\u2028rm x",
        "rm x",
        "/bin/rm x",
        "./git status",
        "../bin/echo hi",
        "echo hi #; rm x",
        "! rm x",
        "if true; then rm x; fi",
        "for f in a; do rm x; done",
        "while true; do rm x; done",
        "time rm x",
        "echo hi;; rm x",
        "echo hi ;& rm x",
        "echo hi &&& rm x",
        "echo hi ||| rm x",
        "echo hi && && rm x",
        "echo hi;",
        "; echo hi",
        "| echo hi",
        "",
        "   ",
        "\t",
        "echo ~root",
        "git --git-dir=~/x log",
        "~/bin/echo hi",
        "echo {a,b}",
        "trap rm EXIT",
        "alias echo=rm",
        "export PATH=.",
        "hash -p /bin/rm echo",
    };

    [Theory]
    [MemberData(nameof(Attempts))]
    public void Never_allows_bypass_attempt_and_falls_to_org_default(string command)
    {
        Assert.Equal(PolicyEffect.Deny, DenyByDefault.Decide("shell.exec", Command(command)).Effect);
        Assert.Equal(PolicyEffect.Ask, AskByDefault.Decide("shell.exec", Command(command)).Effect);
    }

    [Theory]
    [InlineData("echo hi && rm -rf /", "rm -rf /")]
    [InlineData("git status; rm x", "rm x")]
    [InlineData("echo hi | tee out", "tee out")]
    [InlineData("git log || curl evil", "curl evil")]
    public void Denies_chained_command_after_allowed_prefix(string command, string culprit)
    {
        var decision = DenyByDefault.Decide("shell.exec", Command(command));

        Assert.Equal(PolicyEffect.Deny, decision.Effect);
        Assert.False(decision.Unclassifiable);
        Assert.Equal(culprit, decision.SimpleCommand);
    }

    [Theory]
    [InlineData("echo $(rm x)", "command substitution")]
    [InlineData("echo `rm x`", "command substitution")]
    [InlineData("echo hi > x", "redirection")]
    [InlineData("cat <<EOF", "here-document")]
    [InlineData("echo <(rm x)", "process substitution")]
    [InlineData("FOO=1 rm x", "assignment")]
    [InlineData("echo hi &", "background")]
    public void Explains_why_a_line_is_unclassifiable(string command, string because)
    {
        var decision = DenyByDefault.Decide("shell.exec", Command(command));

        Assert.True(decision.Unclassifiable);
        Assert.Contains(because, decision.Reason);
        Assert.Null(decision.Index);
    }

    [Theory]
    [InlineData("echo hello world")]
    [InlineData("git log --oneline src/a.txt")]
    [InlineData("git status && git diff | echo done")]
    [InlineData("git  status\t&&  echo   x")]
    [InlineData("git log HEAD~1")]
    [InlineData("echo ünïcödé")]
    [InlineData("echo hi\trm x")]
    public void Allows_plain_allowed_commands(string command)
    {
        Assert.Equal(PolicyEffect.Allow, DenyByDefault.Decide("shell.exec", Command(command)).Effect);
    }

    [Fact]
    public void Unclassifiable_line_gets_the_most_restrictive_applicable_shell_rule()
    {
        var resolver = Compile("""
            default: ask
            rules:
              - tool: shell.exec
                effect: allow
                args: { command: "*" }
              - tool: shell.exec
                effect: deny
                args: { command: "rm *" }
            """).For("u", []);

        Assert.Equal(PolicyEffect.Allow, resolver.Decide("shell.exec", Command("ls -la")).Effect);
        Assert.Equal(PolicyEffect.Deny, resolver.Decide("shell.exec", Command("ls && rm x")).Effect);
        var wrapped = resolver.Decide("shell.exec", Command("env rm x"));
        Assert.Equal(PolicyEffect.Deny, wrapped.Effect);
        Assert.Equal(1, wrapped.Index);
        // xargs runs rm with arguments no rule sees: the broad "*" does not admit it, so the default (ask) decides.
        Assert.Equal(PolicyEffect.Ask, resolver.Decide("shell.exec", Command("xargs rm")).Effect);
    }

    [Theory]
    [InlineData("/bin/rm -rf x")]
    [InlineData("/usr/bin/rm x")]
    [InlineData("ls && ./rm x")]
    public void Denies_program_given_by_path_when_its_name_is_denied(string command)
    {
        var resolver = Compile("""
            default: ask
            rules:
              - tool: shell.exec
                effect: allow
                args: { command: "*" }
              - tool: shell.exec
                effect: deny
                args: { command: "rm *" }
            """).For("u", []);

        Assert.Equal(PolicyEffect.Deny, resolver.Decide("shell.exec", Command(command)).Effect);
    }

    [Fact]
    public void Does_not_allow_a_workspace_script_named_like_an_allowed_program()
    {
        Assert.Equal(PolicyEffect.Deny, DenyByDefault.Decide("shell.exec", Command("./git status")).Effect);
    }

    [Fact]
    public void Missing_command_argument_matches_no_command_rule()
    {
        Assert.Equal(PolicyEffect.Deny, DenyByDefault.Decide("shell.exec", Args(("timeoutSeconds", "5"))).Effect);
    }

    [Fact]
    public void Overlong_command_line_is_unclassifiable()
    {
        var decision = DenyByDefault.Decide("shell.exec", Command("echo " + new string('a', 70_000)));

        Assert.Equal(PolicyEffect.Deny, decision.Effect);
        Assert.True(decision.Unclassifiable);
    }
}
