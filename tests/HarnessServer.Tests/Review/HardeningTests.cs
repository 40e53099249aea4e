using System.Net;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Review;

/// <summary>
/// Issue 16: no request body, token claim or tool output makes the server answer 503 while the audit is healthy,
/// and one append that cannot be recorded fails only itself, never the writer's batch of other tenants' appends.
/// </summary>
public sealed class HardeningTests(HardeningApplication app) : IClassFixture<HardeningApplication>
{
    private static readonly string PoisonedName = new string('\u0001', 100) + new string('a', 100);

    private static async Task<Guid> NewSessionAsync(HttpClient client) =>
        (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

    private static Task<HttpResponseMessage> CallAsync(HttpClient client, Guid session, object body) =>
        client.PostAsync($"/v1/sessions/{session}/tool-calls", new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"));

    private static Task<HttpResponseMessage> RawCallAsync(HttpClient client, Guid session, string json) =>
        client.PostAsync($"/v1/sessions/{session}/tool-calls", new StringContent(json, Encoding.UTF8, "application/json"));

    private async Task AssertChainValidAsync(string tenant)
    {
        using var auditor = app.ClientFor("auditor", tenant, roles: [HarnessRoles.Auditor]);
        var verify = await (await auditor.GetAsync("/v1/audit/verify")).JsonAsync(HttpStatusCode.OK);
        Assert.True(verify.GetProperty("valid").GetBoolean(), verify.ToString());
    }

    // 100 controls (6 canonical bytes each) in a 200-character name overflowed the writer's buffer inside the batch: 503.
    [Fact]
    public async Task Hardening_tool_name_of_control_characters_is_rejected_not_503()
    {
        using var client = app.ClientFor("poison-name", HardeningApplication.Tenant, ["web"]);
        var session = await NewSessionAsync(client);

        var call = await (await CallAsync(client, session, new { tool = PoisonedName, arguments = new { } })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("rejected", call.GetProperty("status").GetString());
        Assert.Equal("unknown_tool", call.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(PoisonedName, await app.ScalarAsSuperuserAsync<string>(
            "SELECT tool FROM audit_events WHERE tenant_id = $1 AND type = 'tool_call.rejected' AND payload->>'callId' = $2",
            HardeningApplication.Tenant, call.GetProperty("id").GetGuid().ToString()));
        await AssertChainValidAsync(HardeningApplication.Tenant);
    }

    [Fact]
    public async Task Hardening_display_name_of_control_characters_is_recorded_not_503()
    {
        var name = new string('\u0007', 150) + "\u001f\u007f\u0085 Mallory";
        using var client = app.ClientFor("control-name", HardeningApplication.Tenant, ["web"], name: name);
        var session = await NewSessionAsync(client);

        var call = await (await CallAsync(client, session, new { tool = "shell.exec", arguments = new { command = "echo hi" } })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("succeeded", call.GetProperty("status").GetString());
        Assert.Equal(name, await app.ScalarAsSuperuserAsync<string>(
            "SELECT actor_name FROM audit_events WHERE tenant_id = $1 AND actor_id = 'control-name' AND type = 'tool_call.executed'",
            HardeningApplication.Tenant));
        await AssertChainValidAsync(HardeningApplication.Tenant);
    }

    // A text column cannot hold NUL; an unpaired surrogate has no UTF-8 form: refused where they enter, with a reason.
    [Theory]
    [InlineData("name")]
    [InlineData("user")]
    [InlineData("team")]
    public async Task Hardening_claims_a_text_column_cannot_hold_are_401(string which)
    {
        using var client = which switch
        {
            "name" => app.ClientFor("nul-name", HardeningApplication.Tenant, ["web"], name: "Eve\0"),
            "user" => app.ClientFor("nul\0user", HardeningApplication.Tenant, ["web"]),
            _ => app.ClientFor("nul-team", HardeningApplication.Tenant, ["we\0b"]),
        };

        var problem = await (await client.GetAsync("/v1/me")).ProblemAsync(HttpStatusCode.Unauthorized);

        Assert.Contains("cannot be recorded", problem.GetProperty("detail").GetString());
    }

    [Theory]
    [InlineData("{\"tool\":\"fs.read\\u0000\",\"arguments\":{}}", "bad_request")]
    [InlineData("{\"tool\":\"fs.read\",\"arguments\":{\"path\":\"src/a\\u0000.txt\"}}", "invalid_arguments")]
    [InlineData("{\"tool\":\"fs.read\",\"arguments\":{\"path\":\"src/\\ud800.txt\"}}", "invalid_arguments")]
    [InlineData("{\"tool\":\"fs.read\",\"arguments\":{\"path\":\"src/a.txt\",\"\\udc00\":1}}", "invalid_arguments")]
    [InlineData("{\"tool\":\"fs.read\",\"arguments\":{\"path\":\"src/a.txt\",\"x\":[\"\\u0000\"]}}", "invalid_arguments")]
    public async Task Hardening_bodies_a_text_or_jsonb_column_cannot_hold_are_400(string body, string code)
    {
        using var client = app.ClientFor("nul-body", HardeningApplication.Tenant, ["web"]);
        var session = await NewSessionAsync(client);

        await (await RawCallAsync(client, session, body)).ProblemAsync(HttpStatusCode.BadRequest, code);

        var history = await (await client.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
        Assert.Empty(history.GetProperty("toolCalls").EnumerateArray());
    }

    [Theory]
    [InlineData("{\"tool\":\"fs.read\\ud800\",\"arguments\":{}}")]
    [InlineData("{\"approve\":true,\"comment\":\"ok\\u0000\"}")]
    public async Task Hardening_bound_strings_with_NUL_or_lone_surrogates_are_400(string body)
    {
        using var client = app.ClientFor("bound-body", HardeningApplication.Tenant, ["web"], [HarnessRoles.Approver]);
        var session = await NewSessionAsync(client);
        var url = body.Contains("approve") ? $"/v1/approvals/{Guid.NewGuid()}/decision" : $"/v1/sessions/{session}/tool-calls";

        var response = await client.PostAsync(url, new StringContent(body, Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    // One tenant floods the writer with names that could not be hashed or stored; the other's calls, sharing its
    // batches, all succeed, and both chains verify.
    [Fact]
    public async Task Hardening_poisoned_appends_of_one_tenant_never_fail_another_tenants_calls()
    {
        using var attacker = app.ClientFor("attacker", HardeningApplication.Tenant, ["web"], name: new string('\u0002', 300));
        using var victim = app.ClientFor("victim", HardeningApplication.OtherTenant, ["web"]);
        var attackerSession = await NewSessionAsync(attacker);
        var victimSessions = new List<Guid>();
        for (var i = 0; i < 8; i++)
        {
            victimSessions.Add(await NewSessionAsync(victim));
        }

        var attacks = Enumerable.Range(0, 80).Select(async i =>
        {
            var response = i % 2 == 0
                ? await CallAsync(attacker, attackerSession, new { tool = new string((char)(1 + i % 30), 150) + i, arguments = new { } })
                : await RawCallAsync(attacker, attackerSession, "{\"tool\":\"x\\u0000" + i + "\",\"arguments\":{}}");
            return response.StatusCode;
        });
        var calls = Enumerable.Range(0, 80).Select(async i =>
        {
            var response = await CallAsync(victim, victimSessions[i % victimSessions.Count], new { tool = "shell.exec", arguments = new { command = $"echo {i}" } });
            return (await response.JsonAsync(HttpStatusCode.OK)).GetProperty("status").GetString();
        });

        var attackStatuses = await Task.WhenAll(attacks);
        var victimStatuses = await Task.WhenAll(calls);

        Assert.All(victimStatuses, s => Assert.Equal("succeeded", s));
        Assert.All(attackStatuses, s => Assert.True(s is HttpStatusCode.OK or HttpStatusCode.BadRequest, s.ToString()));
        await AssertChainValidAsync(HardeningApplication.Tenant);
        await AssertChainValidAsync(HardeningApplication.OtherTenant);
        Assert.Equal(80, await app.CountAsync(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = 'tool_call.executed'", HardeningApplication.OtherTenant));
    }
}

public sealed class HardeningApplication : HarnessApplication
{
    public const string Tenant = "hardening";
    public const string OtherTenant = "hardening-other";

    public const string OrgPolicy = """
        default: deny
        rules:
          - tool: "fs.*"
            effect: allow
            args: { path: "src/**" }
          - tool: "shell.exec"
            effect: allow
            args: { command: ["echo *", "head *"] }
        """;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        foreach (var tenant in new[] { Tenant, OtherTenant })
        {
            using var admin = ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
            var put = await admin.PutAsync("/v1/admin/policies/org", new StringContent(OrgPolicy, Encoding.UTF8, "application/yaml"));
            put.EnsureSuccessStatusCode();
        }
    }
}
