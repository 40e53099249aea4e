using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Policies;

/// <summary>
/// Shell lines over HTTP through the whole pipeline: a tenant with the shipped <c>policies/acme</c> files, a tenant
/// whose org allows every tool, and one with the corpus policy where files named like options are planted.
/// </summary>
public sealed class ShellPolicyHttpTests(ShellPolicyHttpTests.ShellApplication app) : IClassFixture<ShellPolicyHttpTests.ShellApplication>
{
    public const string Shipped = "shipped";
    public const string Open = "open";
    public const string Corpus = "corpus";
    public const string Reach = "reach";

    public sealed class ShellApplication : HarnessApplication
    {
        public override async Task InitializeAsync()
        {
            await base.InitializeAsync();
            var policies = Path.Combine(RepositoryRoot, "policies", "acme");
            await PutAsync(Shipped, "org", File.ReadAllText(Path.Combine(policies, "org.yaml")));
            await PutAsync(Shipped, "teams/platform", File.ReadAllText(Path.Combine(policies, "teams", "platform.yaml")));
            await PutAsync(Shipped, "teams/security", File.ReadAllText(Path.Combine(policies, "teams", "security.yaml")));
            await PutAsync(Shipped, "users/alice", File.ReadAllText(Path.Combine(policies, "users", "alice.yaml")));
            await PutAsync(Open, "org", "default: deny\nrules:\n  - tool: \"*\"\n    effect: allow\n");
            await PutAsync(Corpus, "org", ShellCorpus.OrgPolicy + "\n  - tool: \"fs.*\"\n    effect: allow\n");
            await PutAsync(Reach, "org", """
                default: deny
                rules:
                  - tool: "fs.*"
                    effect: allow
                  - tool: shell.exec
                    effect: allow
                  - tool: "fs.*"
                    effect: deny
                    args: { path: "secrets/**" }
                    reason: "secrets stay unread"
                """);
        }

        private async Task PutAsync(string tenant, string level, string yaml)
        {
            using var admin = ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
            (await admin.PutAsync($"/v1/admin/policies/{level}", new StringContent(yaml, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
        }
    }

    private static async Task<Guid> NewSessionAsync(HttpClient client) =>
        (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

    private static async Task<JsonElement> ShellAsync(HttpClient client, Guid session, string command) =>
        await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "shell.exec", arguments = new { command } })).JsonAsync(HttpStatusCode.OK);

    private static async Task WriteAsync(HttpClient client, Guid session, string path, string content) =>
        Assert.Equal("succeeded", (await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls",
            new { tool = "fs.write", arguments = new { path, content } })).JsonAsync(HttpStatusCode.OK)).GetProperty("status").GetString());

    [Theory]
    [InlineData("echo \"hello world\"", "hello world\n")]
    [InlineData("echo 'it''s' \"a  b\" c\\ d", "its a  b c d\n")]
    [InlineData("git init -q && git config user.email a@example.com && git config user.name Alice && git commit -q --allow-empty -m \"fix the bug\" && git log --format=%s", "fix the bug\n")]
    public async Task Quoted_lines_run_under_the_shipped_policies(string command, string stdout)
    {
        using var alice = app.ClientFor("alice", Shipped, ["platform"]);
        var session = await NewSessionAsync(alice);

        var call = await ShellAsync(alice, session, command);

        Assert.Equal("succeeded", call.GetProperty("status").GetString());
        Assert.Equal(stdout, call.GetProperty("result").GetProperty("stdout").GetString());
    }

    [Fact]
    public async Task A_glob_lists_the_files_it_matched_under_the_shipped_policies()
    {
        using var alice = app.ClientFor("alice", Shipped, ["platform"]);
        var session = await NewSessionAsync(alice);
        await WriteAsync(alice, session, "src/a.cs", "");
        await WriteAsync(alice, session, "src/b.cs", "");
        await WriteAsync(alice, session, "src/c.txt", "");

        var call = await ShellAsync(alice, session, "ls src/*.cs");

        Assert.Equal("succeeded", call.GetProperty("status").GetString());
        Assert.Equal("src/a.cs\nsrc/b.cs\n", call.GetProperty("result").GetProperty("stdout").GetString());
    }

    [Theory]
    [InlineData("git -c core.fsmonitor='touch pwned' status", "git -c core.fsmonitor='touch pwned' status", "-c")]
    [InlineData("sh build.sh", "sh build.sh", "sh")]
    [InlineData("ls && make -C . all", "make -C . all", "make")]
    public async Task Code_running_forms_are_denied_under_broad_rules_with_the_deciding_word(string command, string simple, string word)
    {
        using var alice = app.ClientFor("alice", Shipped, ["security"]);
        var session = await NewSessionAsync(alice);

        var call = await ShellAsync(alice, session, command);

        Assert.Equal("denied", call.GetProperty("status").GetString());
        Assert.Contains($"decided by the simple command '{simple}' at the word '{word}'", call.GetProperty("decision").GetProperty("reason").GetString());
    }

    [Fact]
    public async Task Simulation_explains_which_simple_command_and_word_decided()
    {
        using var admin = app.ClientFor("admin", Shipped, roles: [HarnessRoles.Admin]);

        var result = await (await admin.PostAsJsonAsync("/v1/admin/policies/simulate", new
        {
            user = "alice",
            teams = new[] { "platform" },
            tool = "shell.exec",
            arguments = new { command = "git status && git fetch --upload-pack=x ." },
        })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("deny", result.GetProperty("effect").GetString());
        Assert.Equal("git fetch --upload-pack=x .", result.GetProperty("simpleCommand").GetString());
        Assert.Contains("at the word '--upload-pack=x'", result.GetProperty("reason").GetString());
    }

    [Fact]
    public async Task Every_line_runs_for_a_tenant_whose_org_allows_every_tool()
    {
        using var user = app.ClientFor("olga", Open);
        var session = await NewSessionAsync(user);
        await WriteAsync(user, session, "build.sh", "echo built\n");

        var script = await ShellAsync(user, session, "sh build.sh");
        var redirected = await ShellAsync(user, session, "echo hi > out.txt; cat out.txt");

        Assert.Equal("built\n", script.GetProperty("result").GetProperty("stdout").GetString());
        Assert.Equal("hi\n", redirected.GetProperty("result").GetProperty("stdout").GetString());
    }

    [Fact]
    public async Task A_file_named_like_an_option_does_not_turn_a_glob_into_code_execution()
    {
        using var user = app.ClientFor("carl", Corpus);
        var session = await NewSessionAsync(user);
        await WriteAsync(user, session, "-exec", "");

        var call = await ShellAsync(user, session, "find . -exe? touch pwned \\;");
        var list = await (await user.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.list", arguments = new { path = "." } })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("denied", call.GetProperty("status").GetString());
        Assert.Contains("at the word '-exec'", call.GetProperty("decision").GetProperty("reason").GetString());
        Assert.DoesNotContain(list.GetProperty("result").GetProperty("entries").EnumerateArray(), e => e.GetProperty("name").GetString() == "pwned");
    }

    [Fact]
    public async Task A_repository_config_with_fsmonitor_and_hooks_runs_neither_under_git_star()
    {
        using var user = app.ClientFor("carl", Corpus);
        var session = await NewSessionAsync(user);
        await WriteAsync(user, session, ".git/hooks/pre-commit", "#!/bin/sh\ntouch pwned-hook\n");

        var call = await ShellAsync(user, session,
            "git init -q && git config user.email a@b.c && git config user.name a && chmod +x .git/hooks/pre-commit && git status --short && git commit -q --allow-empty -m x");
        var status = await ShellAsync(user, session, "git status");
        var list = await ShellAsync(user, session, "ls -A");

        Assert.Equal("succeeded", call.GetProperty("status").GetString());
        Assert.Equal("succeeded", status.GetProperty("status").GetString());
        Assert.DoesNotContain("pwned", list.GetProperty("result").GetProperty("stdout").GetString());
    }

    [Theory]
    [InlineData("[filter \"x\"]\n\tsmudge = touch pwned\n\tclean = touch pwned\n", "* filter=x\n", "filter.x.smudge")]
    [InlineData("[diff \"x\"]\n\ttextconv = touch pwned\n", "* diff=x\n", "diff.x.textconv")]
    [InlineData("[diff]\n\texternal = touch pwned\n", "", "diff.external")]
    [InlineData("[alias]\n\tst = !touch pwned\n", "", "alias.st")]
    [InlineData("[include]\n\tpath = ../evil.cfg\n", "", "[include]")]
    public async Task A_repository_config_naming_a_program_makes_git_denied_under_git_star(string config, string attributes, string key)
    {
        using var user = app.ClientFor("carl", Corpus);
        var session = await NewSessionAsync(user);
        Assert.Equal("succeeded", (await ShellAsync(user, session, "git init -q && git config user.email a@b.c && git config user.name a")).GetProperty("status").GetString());
        await WriteAsync(user, session, "f.txt", "content\n");
        await WriteAsync(user, session, ".gitattributes", attributes);
        var current = (await ToolAsync(user, session, "fs.read", new { path = ".git/config" })).GetProperty("content").GetString();
        await WriteAsync(user, session, ".git/config", current + config);

        foreach (var line in new[] { "git add f.txt", "git diff", "git status" })
        {
            var call = await ShellAsync(user, session, line);
            Assert.Equal("denied", call.GetProperty("status").GetString());
            Assert.True(call.GetProperty("decision").GetProperty("reason").GetString()!.Contains(key), $"{line}: {call.GetProperty("decision")}");
        }

        // An unknown subcommand is an alias, denied by the code-running table before the repository is looked at.
        Assert.Equal("denied", (await ShellAsync(user, session, "git st")).GetProperty("status").GetString());

        var list = await ShellAsync(user, session, "ls -A");
        Assert.DoesNotContain("pwned", list.GetProperty("result").GetProperty("stdout").GetString());
    }

    [Fact]
    public async Task A_repository_config_naming_a_program_still_runs_under_a_rule_without_a_command_matcher()
    {
        using var user = app.ClientFor("olga", Open);
        var session = await NewSessionAsync(user);
        var call = await ShellAsync(user, session,
            "git init -q && git config alias.hi '!echo hi-from-alias' && git hi");
        Assert.Equal("succeeded", call.GetProperty("status").GetString());
        Assert.Contains("hi-from-alias", call.GetProperty("result").GetProperty("stdout").GetString());
    }

    private static async Task<JsonElement> ToolAsync(HttpClient client, Guid session, string tool, object arguments) =>
        (await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool, arguments })).JsonAsync(HttpStatusCode.OK)).GetProperty("result");

    [Fact]
    public async Task Search_and_list_withhold_files_that_a_sub_path_rule_keeps_from_fs_read()
    {
        using var user = app.ClientFor("rhea", Reach);
        var session = await NewSessionAsync(user);
        await WriteAsync(user, session, "src/a.txt", "needle\n");
        Assert.Equal("succeeded", (await ShellAsync(user, session, "mkdir -p secrets/deep && echo needle > secrets/key && echo needle > secrets/deep/k2")).GetProperty("status").GetString());

        var everywhere = await ToolAsync(user, session, "fs.search", new { pattern = "needle" });
        var beneath = await ToolAsync(user, session, "fs.search", new { pattern = "needle", path = "secrets" });
        var root = await ToolAsync(user, session, "fs.list", new { path = "." });
        var secrets = await ToolAsync(user, session, "fs.list", new { path = "secrets" });

        Assert.Equal(["src/a.txt"], everywhere.GetProperty("matches").EnumerateArray().Select(m => m.GetProperty("path").GetString()));
        Assert.Equal(2, everywhere.GetProperty("withheld").GetInt32());
        Assert.Contains("would be deny: secrets stay unread", everywhere.GetProperty("withheldReason").GetString());
        Assert.Empty(beneath.GetProperty("matches").EnumerateArray());
        Assert.Equal(2, beneath.GetProperty("withheld").GetInt32());
        Assert.Equal(["secrets", "src"], root.GetProperty("entries").EnumerateArray().Select(e => e.GetProperty("name").GetString()));
        Assert.False(root.TryGetProperty("withheld", out _));
        Assert.Empty(secrets.GetProperty("entries").EnumerateArray());
        Assert.Equal(2, secrets.GetProperty("withheld").GetInt32());
    }
}
