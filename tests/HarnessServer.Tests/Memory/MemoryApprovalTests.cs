using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;
using Npgsql;

namespace HarnessServer.Tests.Memory;

/// <summary>
/// An <c>ask</c> on the HTTP memory routes is a real approval: held as a <c>memory.save</c> (or <c>memory.search</c>)
/// call outside any session, decided by an approver, run once by the durable executor, audited at every stage.
/// Each test has its own tenant, so counts of rows and events are its own.
/// </summary>
public sealed class MemoryApprovalTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private const string OrgPolicy = """
        default: deny
        rules:
          - tool: "memory.search"
            effect: allow
          - tool: "memory.save"
            effect: allow
            args: { namespace: ["user", "session:*"] }
          - tool: "memory.save"
            effect: ask
            args: { namespace: ["org", "team:*"] }
            reason: "shared memory is curated"
        """;

    private async Task<(HttpClient Requester, HttpClient Approver)> TenantAsync(string tenant, string policy = OrgPolicy)
    {
        using var admin = app.ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
        (await admin.PutAsync("/v1/admin/policies/org", new StringContent(policy, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
        return (app.ClientFor("rita", tenant, ["data"]), app.ClientFor("arne", tenant, ["data"], [HarnessRoles.Approver]));
    }

    private static async Task<(JsonElement Body, Uri Location)> AskAsync(HttpClient client, string @namespace, object body)
    {
        var response = await client.PostAsJsonAsync($"/v1/memory/{@namespace}/items", body);
        var held = await response.JsonAsync(HttpStatusCode.Accepted);
        Assert.NotNull(response.Headers.Location);
        return (held, response.Headers.Location);
    }

    private static Task<HttpResponseMessage> DecideAsync(HttpClient approver, JsonElement held, bool approve) =>
        approver.PostAsJsonAsync($"/v1/approvals/{held.GetProperty("approvalId").GetGuid()}/decision", new { approve, comment = "looked at it" });

    /// <summary>Polls the request (up to 10 s) until it reaches one of <paramref name="statuses"/>; returns its last view.</summary>
    private static async Task<JsonElement> WaitForAsync(HttpClient client, Uri location, params string[] statuses)
    {
        JsonElement view = default;
        for (var i = 0; i < 100; i++)
        {
            view = await (await client.GetAsync(location)).JsonAsync(HttpStatusCode.OK);
            if (statuses.Contains(view.GetProperty("status").GetString()))
            {
                return view;
            }

            await Task.Delay(100);
        }

        return view;
    }

    private Task<long> ItemsAsync(string tenant) => app.CountAsync("SELECT count(*) FROM memory_items WHERE tenant_id = $1", tenant);

    [Fact]
    public async Task An_ask_on_an_http_org_write_answers_202_with_a_pending_approval_and_stores_nothing()
    {
        const string tenant = "mem-held";
        var (requester, approver) = await TenantAsync(tenant);

        var (held, location) = await AskAsync(requester, "org", new { content = "deploys freeze on fridays", metadata = new { source = "ops" } });

        Assert.Equal("pending_approval", held.GetProperty("status").GetString());
        Assert.Equal("memory.save", held.GetProperty("tool").GetString());
        Assert.Equal("org", held.GetProperty("namespace").GetString());
        Assert.Equal("shared memory is curated", held.GetProperty("reason").GetString());
        var approvalId = held.GetProperty("approvalId").GetGuid();
        Assert.Equal($"/v1/memory/requests/{held.GetProperty("id").GetGuid()}", location.OriginalString);
        Assert.Equal("pending_approval", (await (await requester.GetAsync(location)).JsonAsync(HttpStatusCode.OK)).GetProperty("status").GetString());
        var pending = (await (await approver.GetAsync("/v1/approvals?status=pending")).JsonAsync(HttpStatusCode.OK)).GetProperty("approvals");
        var approval = Assert.Single(pending.EnumerateArray(), a => a.GetProperty("id").GetGuid() == approvalId);
        Assert.False(approval.TryGetProperty("sessionId", out _)); // null members are left out
        Assert.Equal("rita", approval.GetProperty("requestedBy").GetString());
        // The approver sees what would be written, not only that something would be.
        Assert.Equal("org", approval.GetProperty("arguments").GetProperty("namespace").GetString());
        Assert.Equal("deploys freeze on fridays", approval.GetProperty("arguments").GetProperty("content").GetString());
        Assert.Equal(0, await ItemsAsync(tenant));
        Assert.Empty(await requester.SearchAsync("org", "deploys freeze fridays"));
    }

    [Fact]
    public async Task An_approved_http_write_is_stored_once_is_searchable_and_every_stage_is_in_a_chain_that_verifies()
    {
        const string tenant = "mem-approved";
        var (requester, approver) = await TenantAsync(tenant);
        var expiresAt = DateTimeOffset.UtcNow.AddDays(7);
        var (held, location) = await AskAsync(requester, "org", new { content = "the release train leaves on thursdays", metadata = new { source = "ops" }, expiresAt });

        await (await DecideAsync(approver, held, approve: true)).JsonAsync(HttpStatusCode.OK);
        var done = await WaitForAsync(requester, location, "succeeded", "failed", "denied");

        Assert.Equal("succeeded", done.GetProperty("status").GetString());
        var itemId = done.GetProperty("result").GetProperty("id").GetGuid();
        Assert.Equal("org", done.GetProperty("result").GetProperty("namespace").GetString());
        Assert.Equal(itemId, Assert.Single(await requester.SearchAsync("org", "release train thursdays")).Id);
        var listed = Assert.Single((await requester.GetFromJsonAsync<JsonElement>("/v1/memory/org/items")).GetProperty("items").EnumerateArray());
        Assert.Equal("rita", listed.GetProperty("author").GetProperty("id").GetString());
        Assert.Equal("ops", listed.GetProperty("metadata").GetProperty("source").GetString());
        Assert.Equal(expiresAt.ToUnixTimeSeconds(), listed.GetProperty("expiresAt").GetDateTimeOffset().ToUnixTimeSeconds());
        Assert.Equal(1, await ItemsAsync(tenant));

        var callId = held.GetProperty("id").GetGuid().ToString();
        await using var connection = new NpgsqlConnection(app.ConnectionString);
        await connection.OpenAsync();
        await using var events = new NpgsqlCommand("""
            SELECT type, actor_id, session_id IS NULL FROM audit_events
            WHERE tenant_id = $1 AND (payload::jsonb->>'callId' = $2 OR payload::jsonb->>'itemId' = $3) ORDER BY seq
            """, connection) { Parameters = { new() { Value = tenant }, new() { Value = callId }, new() { Value = itemId.ToString() } } };
        var stages = new List<(string, string, bool)>();
        await using (var reader = await events.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                stages.Add((reader.GetString(0), reader.GetString(1), reader.GetBoolean(2)));
            }
        }

        Assert.Equal(
            [("tool_call.requested", "rita", true), ("tool_call.decided", "rita", true), ("tool_call.approval_decided", "arne", true),
             ("memory.saved", "rita", true), ("tool_call.executed", "rita", true)],
            stages);
        using var admin = app.ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
        Assert.True((await admin.GetFromJsonAsync<JsonElement>("/v1/audit/verify")).GetProperty("valid").GetBoolean());
    }

    [Fact]
    public async Task A_rejected_http_write_stores_nothing()
    {
        const string tenant = "mem-rejected";
        var (requester, approver) = await TenantAsync(tenant);
        var (held, location) = await AskAsync(requester, "team:data", new { content = "never to be kept" });

        await (await DecideAsync(approver, held, approve: false)).JsonAsync(HttpStatusCode.OK);
        await Task.Delay(500); // an executor that wrongly ran rejected calls would have done so by now

        var view = await (await requester.GetAsync(location)).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("denied", view.GetProperty("status").GetString());
        Assert.False(view.TryGetProperty("result", out _));
        Assert.Equal(0, await ItemsAsync(tenant));
    }

    [Fact]
    public async Task The_requester_cannot_approve_their_own_http_write()
    {
        const string tenant = "mem-own";
        await TenantAsync(tenant);
        using var requester = app.ClientFor("petra", tenant, ["data"], [HarnessRoles.Approver]);
        var (held, _) = await AskAsync(requester, "org", new { content = "self-approved?" });

        await (await DecideAsync(requester, held, approve: true)).ProblemAsync(HttpStatusCode.Forbidden, "own_call");

        Assert.Equal(0, await ItemsAsync(tenant));
    }

    [Fact]
    public async Task Another_tenants_approver_and_another_user_get_404_for_the_approval_and_the_request()
    {
        const string tenant = "mem-tenant";
        var (requester, _) = await TenantAsync(tenant);
        var (held, location) = await AskAsync(requester, "org", new { content = "ours alone" });
        using var foreignApprover = app.ClientFor("arne", "mem-other-tenant", ["data"], [HarnessRoles.Approver, HarnessRoles.Admin]);
        using var colleague = app.ClientFor("carl", tenant, ["data"]);

        await (await DecideAsync(foreignApprover, held, approve: true)).ProblemAsync(HttpStatusCode.NotFound, "approval_not_found");
        await (await foreignApprover.GetAsync(location)).ProblemAsync(HttpStatusCode.NotFound, "memory_request_not_found");
        await (await colleague.GetAsync(location)).ProblemAsync(HttpStatusCode.NotFound, "memory_request_not_found");
        Assert.DoesNotContain(
            (await (await foreignApprover.GetAsync("/v1/approvals?status=pending")).JsonAsync(HttpStatusCode.OK)).GetProperty("approvals").EnumerateArray(),
            a => a.GetProperty("id").GetGuid() == held.GetProperty("approvalId").GetGuid());
        Assert.Equal(0, await ItemsAsync(tenant));
    }

    [Fact]
    public async Task An_http_write_approved_on_a_second_server_process_is_executed_exactly_once()
    {
        const string tenant = "mem-twice";
        var (requester, _) = await TenantAsync(tenant);
        var (held, location) = await AskAsync(requester, "org", new { content = "written once across processes" });

        // Both servers run approval executors over the same database.
        await using var second = await app.StartSiblingAsync();
        using var approver = second.ClientFor("arne", tenant, ["data"], [HarnessRoles.Approver]);
        await (await DecideAsync(approver, held, approve: true)).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("succeeded", (await WaitForAsync(requester, location, "succeeded", "failed")).GetProperty("status").GetString());
        await Task.Delay(500); // give a duplicate run, if there were one, time to land
        Assert.Equal(1, await ItemsAsync(tenant));
        Assert.Equal(1, await app.CountAsync(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = 'tool_call.executed' AND payload::jsonb->>'callId' = $2",
            tenant, held.GetProperty("id").GetGuid().ToString()));
    }

    [Fact]
    public async Task An_approved_http_write_whose_process_died_while_running_is_interrupted_at_restart_and_not_rerun()
    {
        const string tenant = "mem-crash";
        var (requester, _) = await TenantAsync(tenant);
        var (held, location) = await AskAsync(requester, "org", new { content = "claimed, then the server died" });
        // As if a process had claimed the approved call and died before running it.
        await app.ExecuteAsSuperuserAsync($"""
            UPDATE approvals SET status = 'Approved', decided_by = 'arne', decided_at = now(), executed_at = now() WHERE id = '{held.GetProperty("approvalId").GetGuid()}';
            UPDATE tool_calls SET status = 'Running' WHERE id = '{held.GetProperty("id").GetGuid()}';
            """);

        await using var restarted = await app.StartSiblingAsync();

        Assert.Equal("interrupted", (await WaitForAsync(requester, location, "interrupted")).GetProperty("status").GetString());
        Assert.Equal(0, await ItemsAsync(tenant));
    }

    [Fact]
    public async Task A_team_write_whose_requester_left_the_team_before_it_ran_fails_with_not_a_member_and_stores_nothing()
    {
        const string tenant = "mem-left";
        var (requester, approver) = await TenantAsync(tenant);
        var (held, location) = await AskAsync(requester, "team:data", new { content = "written by a former member" });

        // Her next token no longer names the team; memberships follow the token.
        using var later = app.ClientFor("rita", tenant, ["sales"]);
        await (await later.GetAsync("/v1/me")).JsonAsync(HttpStatusCode.OK);
        await (await DecideAsync(approver, held, approve: true)).JsonAsync(HttpStatusCode.OK);
        var done = await WaitForAsync(later, location, "succeeded", "failed", "denied");

        Assert.Equal("failed", done.GetProperty("status").GetString());
        Assert.Equal("not_a_member", done.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(0, await ItemsAsync(tenant));
    }

    [Fact]
    public async Task An_ask_whose_audit_events_cannot_be_written_answers_503_and_holds_nothing()
    {
        const string tenant = "mem-closed";
        var (requester, _) = await TenantAsync(tenant);
        await app.ExecuteAsSuperuserAsync("""
            CREATE FUNCTION refuse_mem_closed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.tenant_id = 'mem-closed' AND NEW.type = 'tool_call.decided' THEN RAISE EXCEPTION 'audit store refuses'; END IF; RETURN NEW; END $$;
            CREATE TRIGGER refuse_mem_closed BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_mem_closed();
            """);
        try
        {
            await (await requester.PostAsJsonAsync("/v1/memory/org/items", new { content = "unaudited" }))
                .ProblemAsync(HttpStatusCode.ServiceUnavailable, "audit_unavailable");
        }
        finally
        {
            await app.ExecuteAsSuperuserAsync("DROP TRIGGER refuse_mem_closed ON audit_events; DROP FUNCTION refuse_mem_closed();");
        }

        Assert.Equal(0, await app.CountAsync("SELECT count(*) FROM tool_calls WHERE tenant_id = $1", tenant));
        Assert.Equal(0, await app.CountAsync("SELECT count(*) FROM approvals WHERE tenant_id = $1", tenant));
    }

    [Fact]
    public async Task A_write_that_could_never_be_stored_is_refused_before_an_approver_is_asked()
    {
        const string tenant = "mem-invalid";
        var (requester, _) = await TenantAsync(tenant);

        await (await requester.PostAsJsonAsync("/v1/memory/org/items", new { content = "   " })).ProblemAsync(HttpStatusCode.BadRequest, "invalid_content");
        await (await requester.PostAsJsonAsync("/v1/memory/org/items", new { content = "late", expiresAt = DateTimeOffset.UtcNow.AddDays(-1) }))
            .ProblemAsync(HttpStatusCode.BadRequest, "invalid_expiry");

        Assert.Equal(0, await app.CountAsync("SELECT count(*) FROM approvals WHERE tenant_id = $1", tenant));
    }

    [Fact]
    public async Task A_delete_or_a_listing_under_ask_is_refused_with_approval_required()
    {
        const string tenant = "mem-refused";
        const string policy = """
            default: deny
            rules:
              - tool: "memory.save"
                effect: ask
              - tool: "memory.search"
                effect: ask
            """;
        var (requester, _) = await TenantAsync(tenant, policy);

        await (await requester.DeleteAsync($"/v1/memory/org/items/{Guid.NewGuid()}")).ProblemAsync(HttpStatusCode.Forbidden, "approval_required");
        await (await requester.GetAsync("/v1/memory/org/items")).ProblemAsync(HttpStatusCode.Forbidden, "approval_required");
    }

    [Fact]
    public async Task A_held_write_is_decided_again_with_its_content_and_may_run_at_once_or_be_denied()
    {
        const string tenant = "mem-redecide";
        var (requester, _) = await TenantAsync(tenant);
        using var admin = app.ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
        const string user = """
            rules:
              - tool: "memory.save"
                effect: allow
                args: { content: "changelog:*" }
              - tool: "memory.save"
                effect: deny
                args: { content: "*password*" }
                reason: "no secrets in memory"
            """;
        (await admin.PutAsync("/v1/admin/policies/users/rita", new StringContent(user, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();

        // The route decides on the namespace alone (ask); the held call, on all of its arguments.
        var allowed = await (await requester.PostAsJsonAsync("/v1/memory/org/items", new { content = "changelog: 2.1 ships" })).JsonAsync(HttpStatusCode.Created);
        var denied = await (await requester.PostAsJsonAsync("/v1/memory/org/items", new { content = "the password is hunter2" }))
            .ProblemAsync(HttpStatusCode.Forbidden, "denied");

        Assert.Equal("org", allowed.GetProperty("namespace").GetString());
        Assert.Equal("no secrets in memory", denied.GetProperty("detail").GetString());
        Assert.Equal(1, await ItemsAsync(tenant));
        Assert.Equal(0, await app.CountAsync("SELECT count(*) FROM approvals WHERE tenant_id = $1", tenant));
    }

    [Fact]
    public async Task An_ask_on_an_http_search_is_held_and_its_result_is_on_the_request_once_approved()
    {
        const string tenant = "mem-search";
        const string policy = """
            default: deny
            rules:
              - tool: "memory.save"
                effect: allow
              - tool: "memory.search"
                effect: ask
                args: { namespace: "org" }
            """;
        var (requester, approver) = await TenantAsync(tenant, policy);
        var itemId = await requester.SaveAsync("org", "the coffee machine is on the third floor");

        var response = await requester.PostAsJsonAsync("/v1/memory/org/search", new { query = "coffee machine floor", k = 3 });
        var held = await response.JsonAsync(HttpStatusCode.Accepted);
        await (await DecideAsync(approver, held, approve: true)).JsonAsync(HttpStatusCode.OK);
        var done = await WaitForAsync(requester, response.Headers.Location!, "succeeded", "failed", "denied");

        Assert.Equal("memory.search", held.GetProperty("tool").GetString());
        Assert.Equal("succeeded", done.GetProperty("status").GetString());
        Assert.Equal(itemId, Assert.Single(done.GetProperty("result").GetProperty("items").EnumerateArray()).GetProperty("id").GetGuid());
    }
}

/// <summary>A held HTTP memory write expires like any other approval.</summary>
public sealed class MemoryApprovalExpiryTests(MemoryApprovalExpiryTests.ShortExpiryApplication app) : IClassFixture<MemoryApprovalExpiryTests.ShortExpiryApplication>
{
    public sealed class ShortExpiryApplication : HarnessApplication
    {
        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["Harness:Approvals:Expiry"] = "00:00:01";
            settings["Harness:Approvals:PollInterval"] = "00:00:00.200";
        }
    }

    [Fact]
    public async Task An_http_write_nobody_decides_in_time_expires_stores_nothing_and_can_no_longer_be_approved()
    {
        const string tenant = "mem-expiry";
        using var admin = app.ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
        (await admin.PutAsync("/v1/admin/policies/org", new StringContent("rules:\n  - tool: memory.save\n    effect: ask\n", Encoding.UTF8, "application/yaml")))
            .EnsureSuccessStatusCode();
        using var requester = app.ClientFor("rita", tenant, ["data"]);
        using var approver = app.ClientFor("arne", tenant, ["data"], [HarnessRoles.Approver]);
        var response = await requester.PostAsJsonAsync("/v1/memory/org/items", new { content = "too late" });
        var held = await response.JsonAsync(HttpStatusCode.Accepted);

        string? status = null;
        for (var i = 0; i < 100 && status != "expired"; i++)
        {
            await Task.Delay(100);
            status = (await (await requester.GetAsync(response.Headers.Location)).JsonAsync(HttpStatusCode.OK)).GetProperty("status").GetString();
        }

        Assert.Equal("expired", status);
        await (await approver.PostAsJsonAsync($"/v1/approvals/{held.GetProperty("approvalId").GetGuid()}/decision", new { approve = true }))
            .ProblemAsync(HttpStatusCode.Conflict);
        await using var connection = new NpgsqlConnection(app.ConnectionString);
        await connection.OpenAsync();
        await using var count = new NpgsqlCommand("""
            SELECT (SELECT count(*) FROM memory_items WHERE tenant_id = $1),
                   (SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = 'tool_call.approval_expired' AND payload::jsonb->>'callId' = $2)
            """, connection) { Parameters = { new() { Value = tenant }, new() { Value = held.GetProperty("id").GetGuid().ToString() } } };
        await using var reader = await count.ExecuteReaderAsync();
        await reader.ReadAsync();
        Assert.Equal((0L, 1L), (reader.GetInt64(0), reader.GetInt64(1)));
    }
}
