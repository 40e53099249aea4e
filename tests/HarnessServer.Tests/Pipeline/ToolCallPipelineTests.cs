using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Sandbox;
using HarnessServer.Tests.Infrastructure;
using HarnessServer.Tests.Sandbox;
using Npgsql;

namespace HarnessServer.Tests.Pipeline;

public sealed class ToolCallPipelineTests(ToolCallPipelineTests.PipelineApplication app) : IClassFixture<ToolCallPipelineTests.PipelineApplication>
{
    public const string Tenant = "pipeline";

    /// <summary>The tenant's org policy for these tests, stored through the admin API once.</summary>
    public sealed class PipelineApplication : HarnessApplication
    {
        public const string OrgPolicy = """
            default: deny
            rules:
              - tool: "fs.*"
                effect: allow
              - tool: "fs.write"
                effect: ask
                args: { path: "reviewed/**" }
              - tool: "shell.exec"
                effect: allow
                args: { command: ["echo *", "cat *", "id *", "ls *"] }
              - tool: "shell.exec"
                effect: deny
                args: { command: ["rm *"] }
                reason: "no deleting"
              - tool: "shell.exec"
                effect: ask
                args: { command: ["wc *"] }
                reason: "counting is reviewed"
            """;

        protected override void Configure(IDictionary<string, string?> settings) =>
            settings["Harness:Approvals:PollInterval"] = "00:00:00.200";

        public override async Task InitializeAsync()
        {
            await base.InitializeAsync();
            using var admin = ClientFor("admin", Tenant, roles: [HarnessRoles.Admin]);
            var put = await admin.PutAsync("/v1/admin/policies/org", new StringContent(OrgPolicy, Encoding.UTF8, "application/yaml"));
            put.EnsureSuccessStatusCode();
        }
    }

    private HttpClient Member(string user = "maria") => app.ClientFor(user, Tenant, ["web"]);

    private static async Task<Guid> NewSessionAsync(HttpClient client)
    {
        var created = await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created);
        Assert.Equal("active", created.GetProperty("status").GetString());
        return created.GetProperty("id").GetGuid();
    }

    private static async Task<JsonElement> CallAsync(HttpClient client, Guid session, string tool, object arguments, HttpStatusCode expected = HttpStatusCode.OK) =>
        await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool, arguments })).JsonAsync(expected);

    [Fact]
    public async Task Allowed_write_then_read_succeeds_with_structured_results()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);

        var write = await CallAsync(client, session, "fs.write", new { path = "src/a.txt", content = "hello" });
        var read = await CallAsync(client, session, "fs.read", new { path = "src/a.txt" });

        Assert.Equal("succeeded", write.GetProperty("status").GetString());
        Assert.Equal(5, write.GetProperty("result").GetProperty("size").GetInt64());
        Assert.Equal("succeeded", read.GetProperty("status").GetString());
        Assert.Equal("hello", read.GetProperty("result").GetProperty("content").GetString());
        Assert.Equal("allow", read.GetProperty("decision").GetProperty("effect").GetString());
        Assert.True(read.GetProperty("auditSeq").GetInt64() > write.GetProperty("auditSeq").GetInt64());
    }

    [Fact]
    public async Task Unknown_tool_is_rejected_and_nothing_runs()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);

        var call = await CallAsync(client, session, "fs.format", new { path = "/" });

        Assert.Equal("rejected", call.GetProperty("status").GetString());
        Assert.Equal("unknown_tool", call.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Schema_invalid_call_is_rejected_with_the_failing_path_and_creates_no_file()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);

        var call = await CallAsync(client, session, "fs.write", new { path = "x.txt", content = 42 });
        var list = await CallAsync(client, session, "fs.list", new { path = "." });

        Assert.Equal("rejected", call.GetProperty("status").GetString());
        Assert.Equal("invalid_arguments", call.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains(call.GetProperty("error").GetProperty("arguments").EnumerateArray(), e => e.GetProperty("path").GetString() == "/content");
        Assert.DoesNotContain(list.GetProperty("result").GetProperty("entries").EnumerateArray(), e => e.GetProperty("name").GetString() == "x.txt");
    }

    [Fact]
    public async Task Denied_call_names_the_rule_and_does_not_run()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);
        await CallAsync(client, session, "fs.write", new { path = "keep.txt", content = "k" });

        var call = await CallAsync(client, session, "shell.exec", new { command = "rm keep.txt" });
        var read = await CallAsync(client, session, "fs.read", new { path = "keep.txt" });

        Assert.Equal("denied", call.GetProperty("status").GetString());
        Assert.Equal("org", call.GetProperty("decision").GetProperty("level").GetString());
        Assert.Equal("no deleting; decided by the simple command 'rm keep.txt' at the word 'rm'", call.GetProperty("decision").GetProperty("reason").GetString());
        Assert.Equal("succeeded", read.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Chained_command_after_an_allowed_prefix_is_denied()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);
        await CallAsync(client, session, "fs.write", new { path = "keep.txt", content = "k" });

        var call = await CallAsync(client, session, "shell.exec", new { command = "echo hi && rm keep.txt" });

        Assert.Equal("denied", call.GetProperty("status").GetString());
        Assert.Equal("succeeded", (await CallAsync(client, session, "fs.read", new { path = "keep.txt" })).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Shell_exec_runs_sandboxed_as_an_unprivileged_user()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);

        var call = await CallAsync(client, session, "shell.exec", new { command = "id -u" });

        Assert.True(call.GetProperty("status").GetString() == "succeeded", call.GetRawText());
        Assert.Equal(0, call.GetProperty("result").GetProperty("exitCode").GetInt32());
        Assert.NotEqual("0", call.GetProperty("result").GetProperty("stdout").GetString()!.Trim());
    }

    [Fact]
    public async Task A_pending_approval_shows_what_the_call_will_do()
    {
        using var requester = Member("pia");
        using var approver = app.ClientFor("anna", Tenant, ["web"], [HarnessRoles.Approver]);
        var session = await NewSessionAsync(requester);
        await CallAsync(requester, session, "fs.write", new { path = "notes.txt", content = "one\ntwo\n" });
        await CallAsync(requester, session, "fs.write", new { path = "other.txt", content = "x" });

        var write = await CallAsync(requester, session, "fs.write", new { path = "reviewed/new.md", content = "fresh" }, HttpStatusCode.Accepted);
        var count = await CallAsync(requester, session, "shell.exec", new { command = "wc -l *.txt" }, HttpStatusCode.Accepted);

        var pending = (await (await approver.GetAsync("/v1/approvals?status=pending")).JsonAsync(HttpStatusCode.OK)).GetProperty("approvals").EnumerateArray().ToList();
        JsonElement PreviewOf(JsonElement call) => pending.Single(a => a.GetProperty("toolCallId").GetString() == call.GetProperty("id").GetString()).GetProperty("preview");

        var file = PreviewOf(write);
        Assert.Equal("file_write", file.GetProperty("kind").GetString());
        Assert.False(file.GetProperty("exists").GetBoolean());
        Assert.Equal("+ fresh\n", file.GetProperty("diff").GetString()); // LineDiff's format, as in the policy history
        Assert.False(file.GetProperty("truncated").GetBoolean());

        // The shell line as decided and as it would run: the glob already expanded against the workspace.
        var shell = PreviewOf(count);
        Assert.Equal("shell", shell.GetProperty("kind").GetString());
        Assert.Equal(["wc", "-l", "notes.txt", "other.txt"], shell.GetProperty("commands")[0].EnumerateArray().Select(w => w.GetString()));
        Assert.Contains("counting is reviewed", pending.Single(a => a.GetProperty("toolCallId").GetString() == count.GetProperty("id").GetString()).GetProperty("reason").GetString());
    }

    [Fact]
    public async Task An_approval_covers_the_workspace_it_was_asked_in_and_a_changed_workspace_does_not_run()
    {
        using var requester = Member("rita");
        using var approver = app.ClientFor("anna", Tenant, ["web"], [HarnessRoles.Approver]);
        var session = await NewSessionAsync(requester);

        // Asked in one workspace, then the requester changes it through an allowed write before the approver decides.
        var first = await CallAsync(requester, session, "fs.write", new { path = "reviewed/run.md", content = "approved text" }, HttpStatusCode.Accepted);
        await CallAsync(requester, session, "fs.write", new { path = "build.sh", content = "echo changed after the ask" });
        await (await approver.PostAsJsonAsync($"/v1/approvals/{first.GetProperty("approvalId").GetGuid()}/decision", new { approve = true })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("rejected", await requester.WaitForCallStatusAsync(session, first.GetProperty("id").GetGuid(), "rejected"));
        var missing = await CallAsync(requester, session, "fs.read", new { path = "reviewed/run.md" });
        Assert.Equal("failed", missing.GetProperty("status").GetString()); // it never ran

        // Asked again in the current workspace and approved with nothing changed in between: it runs, once.
        var second = await CallAsync(requester, session, "fs.write", new { path = "reviewed/run.md", content = "approved text" }, HttpStatusCode.Accepted);
        await (await approver.PostAsJsonAsync($"/v1/approvals/{second.GetProperty("approvalId").GetGuid()}/decision", new { approve = true })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(session, second.GetProperty("id").GetGuid(), "succeeded"));
        var read = await CallAsync(requester, session, "fs.read", new { path = "reviewed/run.md" });
        Assert.Equal("approved text", read.GetProperty("result").GetProperty("content").GetString());

        // The chain says which tree each approval covered, and why the first call did not run.
        using var auditor = app.ClientFor("audrey", Tenant, roles: [HarnessRoles.Auditor]);
        var events = (await (await auditor.GetAsync("/v1/audit/events?user=rita&limit=1000")).JsonAsync(HttpStatusCode.OK)).GetProperty("events").EnumerateArray().ToList();
        string TreeOf(JsonElement call) => events.Single(e => e.GetProperty("type").GetString() == "tool_call.decided"
                && e.GetProperty("payload").GetProperty("callId").GetString() == call.GetProperty("id").GetString())
            .GetProperty("payload").GetProperty("workspace").GetProperty("treeHash").GetString()!;
        Assert.NotEqual(TreeOf(first), TreeOf(second));
        var rejected = events.Single(e => e.GetProperty("type").GetString() == "tool_call.rejected"
            && e.GetProperty("payload").GetProperty("callId").GetString() == first.GetProperty("id").GetString());
        Assert.Equal("workspace_changed", rejected.GetProperty("payload").GetProperty("error").GetProperty("code").GetString());
        var executed = events.Single(e => e.GetProperty("type").GetString() == "tool_call.executed"
            && e.GetProperty("payload").GetProperty("callId").GetString() == second.GetProperty("id").GetString());
        Assert.Equal(TreeOf(second), executed.GetProperty("payload").GetProperty("checkpoint").GetProperty("treeHash").GetString());
    }

    [Fact]
    public async Task Workspace_changes_are_checkpointed_before_they_run_also_after_approval()
    {
        using var requester = Member("carl");
        var session = await NewSessionAsync(requester);

        var direct = await CallAsync(requester, session, "fs.write", new { path = "notes.txt", content = "one" });
        var pending = await CallAsync(requester, session, "fs.write", new { path = "reviewed/notes.md", content = "two" }, HttpStatusCode.Accepted);
        using var approver = app.ClientFor("anna", Tenant, ["web"], [HarnessRoles.Approver]);
        await (await approver.PostAsJsonAsync($"/v1/approvals/{pending.GetProperty("approvalId").GetGuid()}/decision", new { approve = true })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(session, pending.GetProperty("id").GetGuid(), "succeeded"));
        await CallAsync(requester, session, "fs.read", new { path = "notes.txt" });

        // One checkpoint per workspace change, the approved one included; a read changes nothing and has none.
        var checkpoints = await (await requester.GetAsync($"/v1/sessions/{session}/checkpoints")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(
            [direct.GetProperty("id").GetGuid(), pending.GetProperty("id").GetGuid()],
            checkpoints.EnumerateArray().Select(c => c.GetProperty("followedBy").GetProperty("id").GetGuid()));

        // Each call's executed event names the checkpoint taken before it, so the chain vouches for what a rollback restores.
        using var auditor = app.ClientFor("audrey", Tenant, roles: [HarnessRoles.Auditor]);
        var executed = (await (await auditor.GetAsync("/v1/audit/events?type=tool_call.executed&user=carl&limit=1000")).JsonAsync(HttpStatusCode.OK))
            .GetProperty("events").EnumerateArray().Select(e => e.GetProperty("payload")).ToList();
        foreach (var checkpoint in checkpoints.EnumerateArray())
        {
            var callId = checkpoint.GetProperty("followedBy").GetProperty("id").GetString();
            var named = Assert.Single(executed, p => p.GetProperty("callId").GetString() == callId).GetProperty("checkpoint");
            Assert.Equal(checkpoint.GetProperty("id").GetString(), named.GetProperty("id").GetString());
            Assert.Equal(64, named.GetProperty("treeHash").GetString()!.Length);
        }

        var read = Assert.Single(executed, p => !p.TryGetProperty("checkpoint", out _));
        Assert.Equal("succeeded", read.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Each_tenants_sessions_run_as_the_host_user_allocated_to_that_tenant()
    {
        const string other = "pipeline-second";
        using (var admin = app.ClientFor("admin", other, roles: [HarnessRoles.Admin]))
        {
            (await admin.PutAsync("/v1/admin/policies/org", new StringContent(PipelineApplication.OrgPolicy, Encoding.UTF8, "application/yaml")))
                .EnsureSuccessStatusCode();
        }

        using var first = Member();
        using var second = app.ClientFor("maria", other, ["web"]);
        var firstSession = await NewSessionAsync(first);
        var secondSession = await NewSessionAsync(second);

        var firstUid = await ShellUidAsync(first, firstSession);
        var secondUid = await ShellUidAsync(second, secondSession);
        await CallAsync(second, secondSession, "fs.write", new { path = "written.txt", content = "x" });

        var indexes = await SandboxIndexesAsync();
        Assert.Equal(new SandboxOptions().TenantUidBase + indexes[Tenant], firstUid);
        Assert.Equal(new SandboxOptions().TenantUidBase + indexes[other], secondUid);
        Assert.NotEqual(firstUid, secondUid);
        if (Libc.Geteuid() == 0)
        {
            var folder = Path.Combine(app.DataRoot, "workspaces", other, secondSession.ToString());
            Assert.Equal(secondUid, NativeTest.OwnerOf(folder));
            Assert.Equal(secondUid, NativeTest.OwnerOf(Path.Combine(folder, "written.txt")));
        }
    }

    [Fact]
    public async Task Provisioning_a_known_tenant_again_draws_no_sandbox_index()
    {
        using (var warm = Member())
        {
            await NewSessionAsync(warm);
        }

        var before = await LastSandboxIndexAsync();
        foreach (var user in new[] { "ines", "jonas", "kai" })
        {
            using var client = Member(user);
            await NewSessionAsync(client);
        }

        Assert.Equal(before, await LastSandboxIndexAsync());
    }

    private static async Task<long> ShellUidAsync(HttpClient client, Guid session)
    {
        var call = await CallAsync(client, session, "shell.exec", new { command = "id -u" });
        Assert.True(call.GetProperty("status").GetString() == "succeeded", call.GetRawText());
        return long.Parse(call.GetProperty("result").GetProperty("stdout").GetString()!.Trim(), CultureInfo.InvariantCulture);
    }

    private async Task<Dictionary<string, long>> SandboxIndexesAsync()
    {
        await using var command = app.Service<NpgsqlDataSource>().CreateCommand("SELECT id, sandbox_index FROM tenants");
        await using var reader = await command.ExecuteReaderAsync();
        var indexes = new Dictionary<string, long>();
        while (await reader.ReadAsync())
        {
            indexes[reader.GetString(0)] = reader.GetInt64(1);
        }

        return indexes;
    }

    private async Task<long> LastSandboxIndexAsync()
    {
        await using var command = app.Service<NpgsqlDataSource>().CreateCommand("SELECT last_value FROM tenant_sandbox_index");
        return (long)(await command.ExecuteScalarAsync())!;
    }

    [Fact]
    public async Task Ask_waits_for_an_approver_of_the_team_and_runs_once_after_approval()
    {
        using var requester = Member("rita");
        var session = await NewSessionAsync(requester);

        var pending = await CallAsync(requester, session, "fs.write", new { path = "reviewed/plan.md", content = "ship it" }, HttpStatusCode.Accepted);
        Assert.Equal("pending_approval", pending.GetProperty("status").GetString());
        var approvalId = pending.GetProperty("approvalId").GetGuid();

        // The requester cannot approve their own call, even as an approver.
        using var selfApprover = app.ClientFor("rita", Tenant, ["web"], [HarnessRoles.Approver]);
        await (await selfApprover.PostAsJsonAsync($"/v1/approvals/{approvalId}/decision", new { approve = true })).ProblemAsync(HttpStatusCode.Forbidden, "own_call");

        // An approver of another team does not see it.
        using var outsider = app.ClientFor("omar", Tenant, ["finance"], [HarnessRoles.Approver]);
        var outsiders = await (await outsider.GetAsync("/v1/approvals?status=pending")).JsonAsync(HttpStatusCode.OK);
        Assert.DoesNotContain(outsiders.GetProperty("approvals").EnumerateArray(), a => a.GetProperty("id").GetGuid() == approvalId);

        using var approver = app.ClientFor("anna", Tenant, ["web"], [HarnessRoles.Approver]);
        var list = await (await approver.GetAsync("/v1/approvals?status=pending")).JsonAsync(HttpStatusCode.OK);
        Assert.Contains(list.GetProperty("approvals").EnumerateArray(), a => a.GetProperty("id").GetGuid() == approvalId);
        await (await approver.PostAsJsonAsync($"/v1/approvals/{approvalId}/decision", new { approve = true, comment = "ok" })).JsonAsync(HttpStatusCode.OK);

        var status = await requester.WaitForCallStatusAsync(session, pending.GetProperty("id").GetGuid(), "succeeded");
        Assert.Equal("succeeded", status);
        var read = await CallAsync(requester, session, "fs.read", new { path = "reviewed/plan.md" });
        Assert.Equal("ship it", read.GetProperty("result").GetProperty("content").GetString());
        // A second decision is refused: the call ran once.
        await (await approver.PostAsJsonAsync($"/v1/approvals/{approvalId}/decision", new { approve = true })).ProblemAsync(HttpStatusCode.Conflict);
    }

    [Fact]
    public async Task Another_tenants_session_is_404_and_a_paused_session_is_409()
    {
        using var owner = Member();
        var session = await NewSessionAsync(owner);
        using var stranger = app.ClientFor("maria", "elsewhere", ["web"]);

        await (await stranger.GetAsync($"/v1/sessions/{session}")).ProblemAsync(HttpStatusCode.NotFound, "session_not_found");
        await (await stranger.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.list", arguments = new { path = "." } }))
            .ProblemAsync(HttpStatusCode.NotFound);

        (await owner.PostAsync($"/v1/sessions/{session}/pause", null)).EnsureSuccessStatusCode();
        await (await owner.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.list", arguments = new { path = "." } }))
            .ProblemAsync(HttpStatusCode.Conflict, "session_paused");
        (await owner.PostAsync($"/v1/sessions/{session}/resume", null)).EnsureSuccessStatusCode();
        Assert.Equal("succeeded", (await CallAsync(owner, session, "fs.list", new { path = "." })).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Every_stage_is_an_audit_event()
    {
        using var client = Member("audrey");
        var session = await NewSessionAsync(client);
        var call = await CallAsync(client, session, "fs.write", new { path = "a.txt", content = "x" });

        using var auditor = app.ClientFor("rev", Tenant, roles: [HarnessRoles.Auditor]);
        var events = await (await auditor.GetAsync("/v1/audit/events?user=audrey&limit=1000")).JsonAsync(HttpStatusCode.OK);
        var types = events.GetProperty("events").EnumerateArray()
            .Where(e => e.GetProperty("sessionId").GetString() == session.ToString())
            .Select(e => e.GetProperty("type").GetString())
            .ToList();

        Assert.Equal(["session.created", "tool_call.requested", "tool_call.decided", "tool_call.executed"], types);
        Assert.Equal("succeeded", call.GetProperty("status").GetString());
    }
}
