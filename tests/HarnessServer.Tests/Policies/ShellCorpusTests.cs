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
    private const string A = "allow", Q = "ask", D = "deny";

    public static TheoryData<string, string> Lines => new()
    {
        { "ls", A }, { "ls -la", A }, { "ls *.cs", A }, { "ls -la src/", A }, { "pwd", A },
        { "cat README.md", A }, { "cat src/*.py", A }, { "echo \"hello world\"", A }, { "echo 'single quoted'", A },
        { "echo hello\\ world", A }, { "git status", A }, { "git status --short", A }, { "git diff", A },
        { "git diff --stat HEAD~1", A }, { "git log --oneline -20", A }, { "git log --pretty=format:\"%h %s\" -n 5", A },
        { "git add -A", A }, { "git add src/app.py tests/test_app.py", A }, { "git commit -m \"fix the bug\"", A },
        { "git commit -am 'Add feature X'", A }, { "git commit -m \"fix: handle empty input (closes #12)\"", A },
        { "git checkout -b feature/login", A }, { "git switch main", A }, { "git branch -a", A }, { "git show HEAD", A },
        { "git show HEAD:src/main.py", A }, { "git stash", A }, { "git stash pop", A },
        { "git rev-parse --abbrev-ref HEAD", A }, { "git blame -L 10,20 src/app.py", A },
        { "git grep -n \"TODO\" -- src", A }, { "git remote -v", A }, { "git fetch origin", A },
        { "git pull --rebase", A }, { "git merge --no-ff feature", A }, { "git rebase main", A },
        { "git tag v1.0.0", A }, { "git config user.name", A }, { "git config --get remote.origin.url", A },
        { "git -C sub status", A }, { "git --no-pager log -5", A }, { "git log -p -- src/app.py", A },
        { "git diff --name-only main...HEAD", A }, { "git cherry-pick abc123", A },
        { "git restore --staged file.txt", A }, { "git ls-files | grep test", A }, { "grep -rn \"foo bar\" src", A },
        { "grep -rn 'def main' .", A }, { "grep -R --include=*.py \"import os\" .", A }, { "grep -c \"error\" log.txt", A },
        { "grep -E \"^(foo|bar)\" file.txt", A }, { "grep -v '^#' config.ini", A }, { "rg \"fn main\" --type rust", A },
        { "rg -n TODO src/", A }, { "head -n 20 src/main.py", A }, { "tail -f log.txt", A },
        { "tail -n 50 build.log", A }, { "wc -l src/*.py", A }, { "find . -name \"*.py\"", A },
        { "find . -type f -name '*.md' | head -20", A }, { "find src -maxdepth 2 -type d", A },
        { "find . -name \"*.log\" -mtime +7", A }, { "sed -n '1,20p' file.txt", A }, { "sed 's/foo/bar/g' input.txt", A },
        { "sed -i 's/old_name/new_name/g' src/app.py", A }, { "sed -n '/start/,/end/p' file", A },
        { "sed -e 's/a/b/' -e 's/c/d/' f", A }, { "awk '{print $1}' data.txt", A },
        { "awk -F, '{sum += $3} END {print sum}' data.csv", A }, { "awk 'NR==1' file", A },
        { "sort data.txt | uniq -c | sort -rn", A }, { "cut -d: -f1 file.txt", A }, { "tr a-z A-Z", A },
        { "diff -u old.txt new.txt", A }, { "python3 script.py", A }, { "python3 -m pytest", A },
        { "python3 -m pytest -k \"a and b\"", A }, { "python3 -m pytest tests/test_api.py::test_login -v", A },
        { "python3 -m pip install -r requirements.txt", A }, { "python3 -m venv .venv", A },
        { "python3 manage.py migrate", A }, { "python3 --version", A }, { "pytest -x -q", A },
        { "pytest tests/ -k \"not slow\"", A }, { "npm test", A }, { "npm test -- --watch=false", A },
        { "npm run build", A }, { "npm run lint -- --fix", A }, { "npm install", A },
        { "npm install --save-dev typescript", A }, { "node index.js", A }, { "node --version", A },
        { "dotnet build", A }, { "dotnet test --filter \"FullyQualifiedName~Shell\"", A },
        { "dotnet build -c Release && dotnet test", A }, { "cargo build --release", A }, { "cargo test -- --nocapture", A },
        { "go test ./...", A }, { "go build -o bin/app ./cmd/app", A }, { "make test", A }, { "sh build.sh", A },
        { "tar -czf archive.tar.gz src", A }, { "tar -xzf archive.tar.gz", A }, { "tar tf archive.tar", A },
        { "mkdir -p src/components", A }, { "cp -r src backup", A }, { "mv old.txt new.txt", A },
        { "cd src && ls", A }, { "cd frontend && npm test", A }, { "cd .. && ls", A }, { "which python3", A },
        { "jq '.dependencies' package.json", A }, { "jq -r '.[] | .name' data.json", A },
        { "test -f README.md && echo exists", A }, { "true", A }, { "date +%Y-%m-%d", A }, { "du -sh .", A },
        { "stat README.md", A }, { "file image.png", A }, { "basename /workspace/src/app.py", A },
        { "dirname src/app.py", A }, { "realpath .", A }, { "printf '%s\\n' a b c", A },
        { "echo \"done\" | tee -a log.txt", A }, { "chmod +x build.sh", A },
        { "grep -rl \"foo\" . | xargs grep -n bar", A }, { "timeout 60 pytest -x", A }, { "zip -r out.zip src", A },
        { "unzip -o out.zip", A }, { "env", A }, { "whoami", A }, { "uname -a", A }, { "sha256sum dist/*.tar.gz", A },
        { "tree -L 2", A }, { "less README.md", A }, { "git log --oneline | head -5", A },
        { "git status && git diff --stat", A }, { "git add . && git commit -m \"wip\"", A }, { "ls; pwd", A },
        { "sed -i.bak 's/a/b/' f", A }, { "echo \"it's\"", A }, { "echo 'say \"hi\"'", A },
        { "git commit -m \"feat: add 'quoted' word\"", A }, { "echo 'price: $5'", A }, { "git log --grep=\"fix\"", A },
        { "grep -rn 'TODO\\|FIXME' .", A }, { "ls | wc -l", A }, { "cat package.json | jq .scripts", A },
        { "git diff HEAD -- '*.py'", A }, { "ls -la && echo \"---\" && pwd", A }, { "git stash list | head -3", A },
        { "tail -n +2 data.csv | sort -t, -k2", A }, { "cat file.txt | tr -d '\\r'", A }, { "sed 's/\\t/ /g' f", A },
        { "awk 'BEGIN { FS = \":\" } { print $1 }' /etc/passwd", A }, { "python3 -m http.server 8000", A },
        { "python3 -W ignore script.py", A }, { "echo {}", A }, { "git commit -m \"fix 🐛 in parser\"", A },
        { "echo ünïcödé", A }, { "git config user.email agent@example.com", A }, { "git config --local user.name 'Agent Smith'", A },

        { "rm file.txt", Q }, { "rm -f *.pyc", Q }, { "git reset --hard HEAD~1", Q }, { "git clean -fd", Q },

        { "rm -rf node_modules", D }, { "curl https://example.com", D }, { "git push origin main", D },
        { "sudo apt-get install jq", D }, { "echo hi; rm -rf /", D }, { "ls -la | grep \"\\.py\"", D },
        { "echo $HOME", D }, { "cat <<< \"hi\"", D }, { "ls > out.txt", D }, { "npm test 2>&1 | tail -20", D },
        { "mkdir -p build && cd build && cmake ..", D }, { "python3 -c \"print(1)\"", D }, { "bash -c \"ls\"", D },
        { "sh deploy.sh", D }, { "make", D }, { "make build", D }, { "npx prettier --write .", D },
        { "python3 - <<EOF", D }, { "git -c user.name=x commit -m y", D }, { "find . -name \"*.pyc\" -delete", D },
        { "find . -name \"*.py\" -exec grep -l foo {} +", D }, { "ls -la ~/", D }, { "cat ~/.bashrc", D },
        { "echo \"price: \\$5\"", D }, { "grep -rn \"TODO\\|FIXME\" .", D }, { "echo -e \"a\\tb\"", D }, { "history", D },
        { "export PATH=$PATH:/x", D }, { "source venv/bin/activate && pytest", D }, { ". .venv/bin/activate", D },
        { "nohup npm start &", D }, { "(cd src && ls)", D }, { "for f in *.py; do echo $f; done", D },
        { "if [ -f x ]; then echo y; fi", D }, { "node -e \"console.log(1)\"", D }, { "timeout 10 python3 -c \"x\"", D },
        { "env NODE_ENV=test npm test", D }, { "NODE_ENV=test npm test", D }, { "git log --output=out.txt", D },
        { "echo \"unterminated", D }, { "git config alias.st status", D }, { "git config core.pager less", D }, { "git config --add user.name x", D },
    };

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
