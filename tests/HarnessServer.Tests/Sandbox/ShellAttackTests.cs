using HarnessServer.Policies;
using HarnessServer.Sandbox;
using HarnessServer.Tests.Policies;
using static HarnessServer.Tests.Policies.PolicyTesting;

namespace HarnessServer.Tests.Sandbox;

/// <summary>
/// Attacks on <see cref="ShellCorpus.OrgPolicy"/> (which allows git, sed, tar, find, awk, python3, node, timeout,
/// xargs grep, ... but not sh, make, touch): each one's payload creates the file <c>pwned</c>. Every attack goes the
/// way the pipeline takes a line (globs expanded against the workspace, decided, rendered with every word quoted,
/// run in the real sandbox when allowed) and must leave no <c>pwned</c>. Where the attack is live, a control run
/// of the same line as plain <c>sh -c</c> in a fresh workspace shows the payload does run, so the test cannot pass
/// on a harmless line.
/// </summary>
[Collection(SandboxCollection.Name)]
public sealed class ShellAttackTests(SandboxFixture fixture)
{
    private const string Marker = "pwned";
    private const string Same = "=";
    private const string Script = "printf '#!/bin/sh\\ntouch /workspace/pwned\\ncat\\n' > c && chmod +x c";
    private const string GitRepo = "git init -q && git config user.email a@b && git config user.name a";

    /// <summary>(class, setup, line, whether the harness runs it because it is allowed and harmless, control line or null).</summary>
    public static TheoryData<string, string, string, bool, string?> Attacks => new()
    {
        // Code-running options of programs the policy allows.
        { "option", GitRepo, "git -c core.fsmonitor='touch pwned' status", false, Same },
        { "option", GitRepo, "git -c alias.x='!touch pwned' x", false, Same },
        { "option", GitRepo, "git -C . -c core.fsmonitor='touch pwned' status", false, Same },
        { "option", GitRepo, "git --git-dir=.git -c alias.x='!touch pwned' x", false, Same },
        { "option", GitRepo, "git --config-env=core.fsmonitor=PWN status", false, null },
        { "option", GitRepo + " && printf '#!/bin/sh\\ntouch pwned\\n' > git-x && chmod +x git-x", "git --exec-path=. x", false, Same },
        { "option", GitRepo, "git fetch --upload-pack='touch pwned;' .", false, Same },
        { "option", GitRepo, "git ls-remote --upload-pack='touch pwned;' .", false, Same },
        { "option", GitRepo, "git config alias.x '!touch pwned' && git x", false, Same },
        { "option", GitRepo, "git rebase --exec 'touch pwned' --root", false, null },
        { "option", GitRepo, "git bisect run touch pwned", false, null },
        { "option", GitRepo, "git submodule foreach 'touch pwned'", false, null },
        { "option", GitRepo, "git filter-branch --tree-filter 'touch pwned'", false, null },
        { "option", GitRepo, "git difftool -x 'touch pwned'", false, null },
        { "option", GitRepo, "git log --output=pwned", false, Same },
        { "option", "echo a > f", "sed -n '1e touch pwned' f", false, Same },
        { "option", "echo a > f", "sed 's/a/touch pwned/e' f", false, Same },
        { "option", "echo a > f", "sed -n 'w pwned' f", false, Same },
        { "option", "echo a > f", "sed -n 's/a/b/w pwned' f", false, Same },
        { "option", "echo a > f && echo '1e touch pwned' > s.sed", "sed -f s.sed f", false, Same },
        { "option", "echo a > f", "sed --expression='1e touch pwned' f", false, Same },
        { "option", "echo a > f", "sed -ne '1e touch pwned' f", false, Same },
        { "option", "echo a > f", "tar -cf a.tar --checkpoint=1 --checkpoint-action=exec='touch pwned' f", false, Same },
        { "option", "echo a > f && tar -cf a.tar f && rm f", "tar -xf a.tar --to-command='touch pwned'", false, Same },
        { "option", "echo a > f && " + Script, "tar -I ./c -cf a.tar f", false, Same },
        { "option", "echo a > f && " + Script, "tar --use-compress-program=./c -cf a.tar f", false, Same },
        { "option", "echo a > f && " + Script, "tar -cIf ./c a.tar f", false, null },
        { "option", "", "find . -exec touch pwned \\;", false, Same },
        { "option", "", "find . -execdir touch pwned {} +", false, Same },
        { "option", "echo a > f", "find . -name f -fprint pwned", false, Same },
        { "option", "echo a > f", "zip -q t.zip f -T -TT 'touch pwned;'", false, Same },
        { "option", "echo a > f", "awk 'BEGIN{system(\"touch pwned\")}'", false, Same },
        { "option", "echo a > f", "awk 'BEGIN{print \"x\" | \"touch pwned\"}'", false, Same },
        { "option", "printf 'BEGIN{system(\"touch pwned\")}' > p.awk", "awk -f p.awk", false, Same },
        { "option", "echo a > f", "sort --compress-program=./c -S 1 f", false, null },
        { "option", "printf 'BEGIN{system(\"touch pwned\")}' > p.awk", "awk -fp.awk", false, Same },
        { "option", "echo a > f && tar -cf a.tar f && rm f", "tar -xf a.tar --to-comm='touch pwned'", false, Same },
        { "option", "echo a > f", "tar -cf a.tar --checkpoint=1 --checkpoint-act=exec='touch pwned' f", false, Same },
        { "option", GitRepo, "git fetch --upload-pa='touch pwned;' .", false, Same },
        { "option", "echo a > f", "split --filt='touch pwned' f", false, Same },
        { "option", "", "ssh -o ProxyCommand='touch pwned' host", false, null },
        { "option", "", "man -P 'touch pwned' ls", false, null },

        // Configuration the agent wrote: allowed lines, neutralised by the sandbox's environment.
        { "config", GitRepo + " && git config core.fsmonitor 'touch pwned'", "git status", true, "env -u GIT_CONFIG_COUNT git status" },
        { "config", GitRepo + " && printf '#!/bin/sh\\ntouch pwned\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit",
            "git commit -q --allow-empty -m x", true, "env -u GIT_CONFIG_COUNT git commit -q --allow-empty -m x" },
        { "config", GitRepo + " && printf '[core]\\n\\tfsmonitor = touch pwned\\n' > .gitconfig", "git status", true,
            "env -u GIT_CONFIG_COUNT -u GIT_CONFIG_GLOBAL HOME=/workspace git status" },
        { "config", GitRepo + " && printf '[alias]\\n\\tst = !touch pwned\\n' > .gitconfig", "git st", false,
            "env -u GIT_CONFIG_GLOBAL HOME=/workspace git st" },
        { "config", GitRepo + " && git config alias.x '!touch pwned'", "git x", false, Same },
        { "config", GitRepo + " && git config core.fsmonitor 'touch pwned'", "env GIT_CONFIG_COUNT=0 git status", false, Same },
        { "config", GitRepo + " && git config core.pager 'touch pwned'", "git log", true, null },
        { "config", "printf 'all:\\n\\ttouch pwned\\n' > Makefile", "make", false, Same },
        { "config", "printf 'all:\\n\\ttouch pwned\\n' > Makefile", "make all", false, Same },

        // Files named like options, turned into options by the shell's glob expansion.
        { "glob", "touch ./-exec", "find . -exe? touch pwned \\;", false, Same },
        { "glob", "touch -- -c 'import os;os.system(\"touch pwned\")'", "python3 -? imp*", false, Same },
        { "glob", "echo a > f && printf 'touch pwned' > p.sh && touch ./--checkpoint=1 './--checkpoint-action=exec=sh p.sh'", "tar -cf a.tar *", false, Same },
        { "glob", GitRepo + " && touch ./--output=pwned", "git log *", false, Same },
        { "glob", "echo a > f && touch ./-TT './touch pwned;' ./-T", "zip -q t.zip f *", false, null },

        // Launchers and wrappers.
        { "launcher", "", "sh -c 'touch pwned'", false, Same },
        { "launcher", "", "bash -c 'touch pwned'", false, Same },
        { "launcher", "", "dash -c 'touch pwned'", false, Same },
        { "launcher", "echo 'touch pwned' > evil.sh", "sh evil.sh", false, Same },
        { "launcher", "echo 'touch pwned' > evil.sh", "sh build.sh; sh evil.sh", false, Same },
        { "launcher", "", "env sh -c 'touch pwned'", false, Same },
        { "launcher", "", "env -S 'sh -c \"touch pwned\"'", false, Same },
        { "launcher", "", "echo pwned | xargs touch", false, Same },
        { "launcher", "", "echo -exec touch pwned ';' | xargs find .", false, Same },
        { "launcher", "", "timeout 5 sh -c 'touch pwned'", false, Same },
        { "launcher", "", "timeout 5 bash -c 'touch pwned'", false, Same },
        { "launcher", "", "timeout 5 env sh -c 'touch pwned'", false, Same },
        { "launcher", "", "nice sh -c 'touch pwned'", false, Same },
        { "launcher", "", "nohup sh -c 'touch pwned'", false, Same },
        { "launcher", "", "setsid -w sh -c 'touch pwned'", false, Same },
        { "launcher", "", "prlimit --nofile=64 sh -c 'touch pwned'", false, Same },
        { "launcher", "", "setpriv sh -c 'touch pwned'", false, Same },
        { "launcher", "", "setarch x86_64 sh -c 'touch pwned'", false, null },
        { "launcher", "mkdir d && printf '#!/bin/sh\\ntouch /workspace/pwned\\n' > d/a && chmod +x d/a", "run-parts d", false, Same },
        { "launcher", "", "busybox sh -c 'touch pwned'", false, null },
        { "launcher", "", "exec sh -c 'touch pwned'", false, Same },
        { "launcher", "", "command sh -c 'touch pwned'", false, Same },
        { "launcher", "", "python3 -c 'open(\"pwned\", \"w\")'", false, Same },
        { "launcher", "", "perl -e 'open F, \">pwned\"'", false, Same },
        { "launcher", "", "node -e 'require(\"fs\").writeFileSync(\"pwned\", \"\")'", false, null },
        { "launcher", "", "echo 'import os; os.system(\"touch pwned\")' | python3", false, Same },
        { "launcher", "", "echo 'open(\"pwned\",\"w\")' | python3 -", false, Same },
        { "launcher", "", "timeout 5 python3 -c 'open(\"pwned\", \"w\")'", false, Same },

        // Quoting, expansions, separators, unicode, continuations.
        { "syntax", "", "echo '$(touch pwned)'", true, null },
        { "syntax", "", "echo '`touch pwned`'", true, null },
        { "syntax", "", "echo \"a;touch pwned\"", true, null },
        { "syntax", "", "echo 'a' && echo \"b|touch pwned\"", true, null },
        { "syntax", "", "echo hi\\;touch pwned", true, null },
        { "syntax", "", "echo '*' \"?\" '[a]'", true, null },
        { "syntax", "", "echo \"$(touch pwned)\"", false, Same },
        { "syntax", "", "echo $(touch pwned)", false, Same },
        { "syntax", "", "echo `touch pwned`", false, Same },
        { "syntax", "", "echo hi\ntouch pwned", false, Same },
        { "syntax", "", "echo hi\\\ntouch pwned", false, null },
        { "syntax", "", "echo hi\u200b; touch pwned", false, Same },
        { "syntax", "", "echo hi\u2028touch pwned", false, null },
        { "syntax", "", "echo hi\u00a0&&\u00a0touch pwned", false, null },
        { "syntax", "", "ｔouch pwned", false, null },
        { "syntax", "", "echo hi; touch pwned", false, Same },
        { "syntax", "", "ls && touch pwned", false, Same },
        { "syntax", "", "git status || touch pwned", false, Same },
        { "syntax", "", "echo hi > pwned", false, Same },
        { "syntax", "", "FOO=1 touch pwned", false, Same },
        { "syntax", "", "t\\ouch pwned", false, Same },
        { "syntax", "", "'touch' pwned", false, Same },
        { "syntax", "", "echo hi & touch pwned", false, Same },
    };

    [Fact]
    public void There_are_at_least_60_attacks_across_the_classes()
    {
        var classes = Attacks.Select(a => (string)a[0]).ToList();

        Assert.True(classes.Count >= 60, $"{classes.Count} attacks");
        Assert.All(new[] { "option", "config", "glob", "launcher", "syntax" }, c => Assert.Contains(c, classes));
    }

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task Attack_payload_does_not_run_through_the_harness(string kind, string setup, string line, bool runs, string? control)
    {
        _ = kind;
        using var workspace = fixture.NewWorkspace();
        if (setup.Length > 0)
        {
            Assert.Equal(0, (await fixture.ShellAsync(workspace, setup)).ExitCode);
        }

        var decided = ShellLine.ExpandGlobs(line, workspace.Glob);
        var decision = ShellCorpus.Resolver.Decide("shell.exec", Command(decided), Workspace.MountPoint);
        Assert.Equal(runs, decision.Effect == PolicyEffect.Allow);
        if (decision.Effect == PolicyEffect.Allow)
        {
            await fixture.ShellAsync(workspace, ShellLine.Render(decided) ?? decided);
        }

        Assert.False(File.Exists(System.IO.Path.Combine(workspace.FullPath, Marker)), $"'{line}' ran its payload ({decision.Explanation})");

        if (control is not null)
        {
            using var naive = fixture.NewWorkspace();
            var raw = control == Same ? line : control;
            await fixture.ShellAsync(naive, setup.Length > 0 ? $"{setup}\n{raw}" : raw, timeoutSeconds: 10);
            Assert.True(File.Exists(System.IO.Path.Combine(naive.FullPath, Marker)), $"the control run of '{raw}' did not run its payload: the attack is not live");
        }
    }
}
