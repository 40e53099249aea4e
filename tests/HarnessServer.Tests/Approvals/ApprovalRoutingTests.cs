using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Approvals;

/// <summary>
/// Approvals routed by the rule that asked, over HTTP: quorum of distinct approvers, named teams and roles, self
/// approval, per-rule expiry, and the race of votes that settle one approval.
/// </summary>
public sealed partial class ApprovalRoutingTests(ApprovalRoutingTests.RoutingApplication app) : IClassFixture<ApprovalRoutingTests.RoutingApplication>
{
    public const string Tenant = "routing";

    /// <summary>The tenant with a webhook (the others' events go nowhere).</summary>
    public const string HookTenant = "routing-hooks";

    /// <summary>A tenant whose webhook receiver is down at first.</summary>
    public const string DownTenant = "routing-down";

    public sealed class RoutingApplication : HarnessApplication
    {
        public const string OrgPolicy = """
            default: deny
            rules:
              - tool: "fs.*"
                effect: allow
              - tool: fs.write
                effect: ask
                args: { path: "plain/**" }
              - tool: fs.write
                effect: ask
                args: { path: "two/**" }
                quorum: 2
              - tool: fs.write
                effect: ask
                args: { path: "sec/**" }
                approvers: ["team:security"]
              - tool: fs.write
                effect: ask
                args: { path: "adm/**" }
                approvers: ["role:harness.admin"]
              - tool: fs.write
                effect: ask
                args: { path: "mine/**" }
                self: allow
              - tool: fs.write
                effect: ask
                args: { path: "short/**" }
                expires: 1s
            """;

        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["Harness:Approvals:PollInterval"] = "00:00:00.100";
            // The test's receiver listens on loopback, which a Production server reaches only where configured.
            settings["Harness:Webhooks:AllowedNetworks:0"] = "127.0.0.1/32";
            settings["Harness:Webhooks:PollInterval"] = "00:00:00.100";
            settings["Harness:Webhooks:InitialBackoff"] = "00:00:00.200";
        }

        public override async Task InitializeAsync()
        {
            await base.InitializeAsync();
            foreach (var tenant in new[] { Tenant, HookTenant, DownTenant })
            {
                using var admin = ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
                var put = await admin.PutAsync("/v1/admin/policies/org", new StringContent(OrgPolicy, Encoding.UTF8, "application/yaml"));
                put.EnsureSuccessStatusCode();
            }
        }
    }

    private HttpClient Requester(string user = "rita") => app.ClientFor(user, Tenant, ["web"]);

    private HttpClient Approver(string user, string team = "web") => app.ClientFor(user, Tenant, [team], [HarnessRoles.Approver]);

    private static async Task<Guid> NewSessionAsync(HttpClient client) =>
        (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

    /// <summary>Asks for a write under <paramref name="path"/>: the call (held) and its approval's id.</summary>
    private static async Task<(Guid Session, Guid Call, Guid Approval)> AskAsync(HttpClient requester, string path, string content = "reviewed")
    {
        var session = await NewSessionAsync(requester);
        var held = await (await requester.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls",
            new { tool = "fs.write", arguments = new { path, content } })).JsonAsync(HttpStatusCode.Accepted);
        Assert.Equal("pending_approval", held.GetProperty("status").GetString());
        return (session, held.GetProperty("id").GetGuid(), held.GetProperty("approvalId").GetGuid());
    }

    private static Task<HttpResponseMessage> VoteAsync(HttpClient approver, Guid approval, bool approve, string? comment = null) =>
        approver.PostAsJsonAsync($"/v1/approvals/{approval}/decision", new { approve, comment });

    private Task<long> EventsAsync(string type, Guid approval) =>
        app.CountAsync("SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = $2 AND payload->>'approvalId' = $3", Tenant, type, approval.ToString());

    private Task<long> ExecutedAsync(Guid call) =>
        app.CountAsync("SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = 'tool_call.executed' AND payload->>'callId' = $2", Tenant, call.ToString());

    private async Task<JsonElement> DecidedPayloadAsync(Guid approval) =>
        JsonDocument.Parse((await app.ScalarAsSuperuserAsync<string>(
            "SELECT payload::text FROM audit_events WHERE tenant_id = $1 AND type = 'tool_call.approval_decided' AND payload->>'approvalId' = $2",
            Tenant, approval.ToString()))!).RootElement.Clone();

    private static async Task<JsonElement?> FindAsync(HttpClient client, string url, Guid approval)
    {
        var list = await (await client.GetAsync(url)).JsonAsync(HttpStatusCode.OK);
        return list.GetProperty("approvals").EnumerateArray().Cast<JsonElement?>().FirstOrDefault(a => a!.Value.GetProperty("id").GetGuid() == approval);
    }

    [Fact]
    public async Task Quorum_two_counts_the_same_approver_once_and_runs_once_after_two_distinct_approvers()
    {
        using var requester = Requester();
        using var anna = Approver("anna");
        using var bert = Approver("bert");
        var (session, call, approval) = await AskAsync(requester, "two/a.md");

        var first = await (await VoteAsync(anna, approval, true, "looks fine")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("pending", first.GetProperty("status").GetString());
        Assert.Equal(2, first.GetProperty("quorum").GetInt32());
        Assert.Equal(["anna"], first.GetProperty("approvals").EnumerateArray().Select(v => v.GetProperty("approver").GetString()));

        // The same person again counts once: refused, and the call still waits.
        await (await VoteAsync(anna, approval, true)).ProblemAsync(HttpStatusCode.Conflict, "already_voted");
        await (await VoteAsync(anna, approval, false)).ProblemAsync(HttpStatusCode.Conflict, "already_voted");
        await Task.Delay(300);
        Assert.Equal("pending_approval", await requester.WaitForCallStatusAsync(session, call, "pending_approval"));
        Assert.Equal(0, await ExecutedAsync(call));

        var second = await (await VoteAsync(bert, approval, true)).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("approved", second.GetProperty("status").GetString());
        Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(session, call, "succeeded"));
        Assert.Equal(1, await ExecutedAsync(call));

        // Every vote is audited; the deciding event names both approvers.
        Assert.Equal(1, await EventsAsync("tool_call.approval_voted", approval));
        var decided = await DecidedPayloadAsync(approval);
        Assert.Equal(["anna", "bert"], decided.GetProperty("approvals").EnumerateArray().Select(v => v.GetString()));
        Assert.Equal(2, decided.GetProperty("quorum").GetInt32());
    }

    [Fact]
    public async Task One_rejection_rejects_a_quorum_call_and_it_never_runs()
    {
        using var requester = Requester();
        using var anna = Approver("anna");
        using var bert = Approver("bert");
        using var cleo = Approver("cleo");
        var (session, call, approval) = await AskAsync(requester, "two/b.md");

        await (await VoteAsync(anna, approval, true)).JsonAsync(HttpStatusCode.OK);
        var rejected = await (await VoteAsync(bert, approval, false, "not this")).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("rejected", rejected.GetProperty("status").GetString());
        await (await VoteAsync(cleo, approval, true)).ProblemAsync(HttpStatusCode.Conflict, "approval_decided");
        await (await VoteAsync(cleo, approval, true, new string('x', 4001))).ProblemAsync(HttpStatusCode.BadRequest, "invalid_comment");
        Assert.Equal("denied", await requester.WaitForCallStatusAsync(session, call, "denied"));
        Assert.Equal(0, await ExecutedAsync(call));
        Assert.Equal("bert", (await DecidedPayloadAsync(approval)).GetProperty("approver").GetString());
    }

    [Fact]
    public async Task A_rule_naming_a_team_is_decided_by_its_members_only()
    {
        using var requester = Requester();
        var (session, call, approval) = await AskAsync(requester, "sec/c.md");
        using var teamApprover = Approver("anna");
        using var outsider = Approver("omar", "finance");
        using var plain = app.ClientFor("paul", Tenant, ["web"]);
        using var security = app.ClientFor("sami", Tenant, ["security"]);
        using var stranger = app.ClientFor("sami", "elsewhere", ["security"], [HarnessRoles.Approver]);

        // The requester's team approver saw such calls by default; the rule names someone else: 403 saying whom.
        var refused = await (await VoteAsync(teamApprover, approval, true)).ProblemAsync(HttpStatusCode.Forbidden, "not_an_approver");
        Assert.Contains("team:security", refused.GetProperty("detail").GetString());
        Assert.Null(await FindAsync(teamApprover, "/v1/approvals?status=pending", approval));
        // An approver outside it never saw it: it does not exist for them, nor for another tenant.
        await (await VoteAsync(outsider, approval, true)).ProblemAsync(HttpStatusCode.NotFound, "approval_not_found");
        await (await VoteAsync(stranger, approval, true)).ProblemAsync(HttpStatusCode.NotFound, "approval_not_found");
        // A member without a role the rule does not name is refused as the route always refused them.
        await (await VoteAsync(plain, approval, true)).ProblemAsync(HttpStatusCode.Forbidden, "not_an_approver");
        await (await plain.GetAsync("/v1/approvals")).ProblemAsync(HttpStatusCode.Forbidden);

        // A member of the named team decides it, without the approver role, and finds it among theirs.
        await (await security.GetAsync("/v1/approvals")).ProblemAsync(HttpStatusCode.Forbidden);
        Assert.NotNull(await FindAsync(security, "/v1/me/approvals?status=pending", approval));
        Assert.Null(await FindAsync(plain, "/v1/me/approvals?status=pending", approval));
        var approved = await (await VoteAsync(security, approval, true)).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("approved", approved.GetProperty("status").GetString());
        Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(session, call, "succeeded"));
    }

    [Fact]
    public async Task A_rule_naming_a_role_is_decided_by_its_holders_only()
    {
        using var requester = Requester();
        var (session, call, approval) = await AskAsync(requester, "adm/d.md");
        using var teamApprover = Approver("anna");
        using var admin = app.ClientFor("ada", Tenant, ["ops"], [HarnessRoles.Admin]);

        await (await VoteAsync(teamApprover, approval, true)).ProblemAsync(HttpStatusCode.Forbidden, "not_an_approver");
        Assert.NotNull(await FindAsync(admin, "/v1/me/approvals?status=pending", approval));
        await (await VoteAsync(admin, approval, true)).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(session, call, "succeeded"));
    }

    [Fact]
    public async Task An_admin_not_named_by_the_rule_sees_the_approval_but_cannot_decide_it()
    {
        using var requester = Requester();
        var (_, _, approval) = await AskAsync(requester, "sec/e.md");
        using var admin = app.ClientFor("ada", Tenant, ["ops"], [HarnessRoles.Admin]);

        Assert.NotNull(await FindAsync(admin, "/v1/approvals?status=pending", approval));
        Assert.Null(await FindAsync(admin, "/v1/me/approvals?status=pending", approval));
        await (await VoteAsync(admin, approval, true)).ProblemAsync(HttpStatusCode.Forbidden, "not_an_approver");
    }

    [Fact]
    public async Task The_requester_approves_their_own_call_only_where_the_rule_says_self_allow()
    {
        using var requester = Requester();
        var (ownSession, ownCall, own) = await AskAsync(requester, "mine/f.md");
        var (_, plainCall, plain) = await AskAsync(requester, "plain/f.md");

        Assert.NotNull(await FindAsync(requester, "/v1/me/approvals?status=pending", own));
        Assert.Null(await FindAsync(requester, "/v1/me/approvals?status=pending", plain));
        await (await VoteAsync(requester, plain, true)).ProblemAsync(HttpStatusCode.Forbidden, "own_call");
        // Even holding the approver role, the requester of a four-eyes call cannot decide it.
        using var requesterAsApprover = Approver("rita");
        await (await VoteAsync(requesterAsApprover, plain, true)).ProblemAsync(HttpStatusCode.Forbidden, "own_call");

        await (await VoteAsync(requester, own, true)).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(ownSession, ownCall, "succeeded"));
        Assert.True((await DecidedPayloadAsync(own)).GetProperty("self").GetBoolean());
        Assert.Equal(0, await ExecutedAsync(plainCall));
    }

    [Fact]
    public async Task Each_rule_sets_its_own_expiry_and_others_keep_the_global_one()
    {
        using var requester = Requester();
        using var anna = Approver("anna");
        var (session, call, shortLived) = await AskAsync(requester, "short/g.md");
        var (_, _, plain) = await AskAsync(requester, "plain/g.md");

        var views = (await (await anna.GetAsync("/v1/approvals")).JsonAsync(HttpStatusCode.OK)).GetProperty("approvals").EnumerateArray()
            .ToDictionary(a => a.GetProperty("id").GetGuid(), a => a.GetProperty("expiresAt").GetDateTimeOffset() - a.GetProperty("createdAt").GetDateTimeOffset());
        Assert.Equal(TimeSpan.FromSeconds(1), views[shortLived]);
        Assert.Equal(TimeSpan.FromHours(24), views[plain]);

        Assert.Equal("expired", await requester.WaitForCallStatusAsync(session, call, "expired"));
        await (await VoteAsync(anna, shortLived, true)).ProblemAsync(HttpStatusCode.Conflict);
        Assert.Equal(0, await ExecutedAsync(call));
    }

    [Fact]
    public async Task The_matrix_and_simulate_show_who_would_approve()
    {
        using var requester = Requester();
        using var admin = app.ClientFor("ada", Tenant, ["ops"], [HarnessRoles.Admin]);

        var matrix = await (await requester.GetAsync("/v1/me/permissions")).JsonAsync(HttpStatusCode.OK);
        var write = matrix.GetProperty("tools").EnumerateArray().Single(t => t.GetProperty("tool").GetString() == "fs.write");
        var security = write.GetProperty("rules").EnumerateArray().Single(r => r.GetProperty("args").GetRawText().Contains("sec/**"));
        Assert.Equal(["team:security"], security.GetProperty("approval").GetProperty("approvers").EnumerateArray().Select(a => a.GetString()));
        var two = write.GetProperty("rules").EnumerateArray().Single(r => r.GetProperty("args").GetRawText().Contains("two/**"));
        Assert.Equal(2, two.GetProperty("approval").GetProperty("quorum").GetInt32());
        Assert.True(two.GetProperty("approval").GetProperty("defaultApprovers").GetBoolean());
        var allow = write.GetProperty("rules").EnumerateArray().Single(r => r.GetProperty("effect").GetString() == "allow");
        Assert.Equal(JsonValueKind.Null, allow.TryGetProperty("approval", out var none) ? none.ValueKind : JsonValueKind.Null);

        var simulated = await (await admin.PostJsonAsync("/v1/admin/policies/simulate",
            new { user = "rita", teams = new[] { "web" }, tool = "fs.write", arguments = new { path = "mine/x.md", content = "x" } })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("ask", simulated.GetProperty("effect").GetString());
        var approval = simulated.GetProperty("approval");
        Assert.Equal("allow", approval.GetProperty("self").GetString());
        Assert.Equal(86400, approval.GetProperty("expiresSeconds").GetInt64());
        Assert.Contains("the requester may approve their own call", approval.GetProperty("who").GetString());

        var short_ = await (await admin.PostJsonAsync("/v1/admin/policies/simulate",
            new { user = "rita", teams = new[] { "web" }, tool = "fs.write", arguments = new { path = "short/x.md", content = "x" } })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(1, short_.GetProperty("approval").GetProperty("expiresSeconds").GetInt64());
    }

    [Fact]
    public async Task Two_votes_reaching_quorum_at_once_run_the_call_once()
    {
        // The two votes arrive at two server processes over one database, as behind a load balancer.
        await using var second = await app.StartSiblingAsync();
        using var requester = Requester();
        for (var round = 0; round < 5; round++)
        {
            using var anna = Approver("anna");
            using var bert = Approver("bert");
            using var cleo = second.ClientFor("cleo", Tenant, ["web"], [HarnessRoles.Approver]);
            var (session, call, approval) = await AskAsync(requester, $"two/race-{round}.md");
            await (await VoteAsync(anna, approval, true)).JsonAsync(HttpStatusCode.OK);

            // Two votes that would each reach the quorum arrive together: one settles it, the other is refused.
            var responses = await Task.WhenAll(VoteAsync(bert, approval, true), VoteAsync(cleo, approval, true));

            Assert.Equal([HttpStatusCode.OK, HttpStatusCode.Conflict], responses.Select(r => r.StatusCode).Order());
            Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(session, call, "succeeded"));
            Assert.Equal(1, await EventsAsync("tool_call.approval_decided", approval));
            Assert.Equal(1, await ExecutedAsync(call));
        }
    }

    [Fact]
    public async Task An_approval_and_a_rejection_racing_give_one_outcome()
    {
        await using var second = await app.StartSiblingAsync();
        using var requester = Requester();
        for (var round = 0; round < 5; round++)
        {
            using var anna = Approver("anna");
            using var bert = second.ClientFor("bert", Tenant, ["web"], [HarnessRoles.Approver]);
            var (session, call, approval) = await AskAsync(requester, $"plain/race-{round}.md");

            var responses = await Task.WhenAll(VoteAsync(anna, approval, true), VoteAsync(bert, approval, false));

            Assert.Equal([HttpStatusCode.OK, HttpStatusCode.Conflict], responses.Select(r => r.StatusCode).Order());
            var winner = await responses.Single(r => r.StatusCode == HttpStatusCode.OK).JsonAsync(HttpStatusCode.OK);
            var outcome = winner.GetProperty("status").GetString();
            Assert.Equal(outcome == "approved" ? "succeeded" : "denied", await requester.WaitForCallStatusAsync(session, call, "succeeded", "denied"));
            Assert.Equal(outcome == "approved" ? 1 : 0, await ExecutedAsync(call));
            Assert.Equal(1, await EventsAsync("tool_call.approval_decided", approval));
        }
    }
}
