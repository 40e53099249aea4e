using System.Net;
using System.Net.Http.Json;
using System.Text;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Memory;

/// <summary>Memory under the tenant's real policy: the contract's memory rules through HTTP and through the tools.</summary>
public sealed class MemoryGovernanceTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private const string Tenant = "governed";

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
          - tool: "memory.save"
            effect: deny
            args: { namespace: "team:legal" }
            reason: "legal notes are kept elsewhere"
        """;

    private async Task ApplyPolicyAsync()
    {
        using var admin = app.ClientFor("admin", Tenant, roles: [HarnessRoles.Admin]);
        (await admin.PutAsync("/v1/admin/policies/org", new StringContent(OrgPolicy, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
    }

    [Fact]
    public async Task Http_writes_follow_the_tenants_policy_after_membership()
    {
        await ApplyPolicyAsync();
        using var member = app.ClientFor("lena", Tenant, ["legal"]);

        var own = await member.PostAsJsonAsync("/v1/memory/user/items", new { content = "my own note" });
        var denied = await member.PostAsJsonAsync("/v1/memory/team:legal/items", new { content = "contract draft" });
        var asked = await member.PostAsJsonAsync("/v1/memory/org/items", new { content = "company-wide note" });

        await own.JsonAsync(HttpStatusCode.Created);
        Assert.Equal("legal notes are kept elsewhere", (await denied.ProblemAsync(HttpStatusCode.Forbidden, "denied")).GetProperty("detail").GetString());
        Assert.Equal("pending_approval", (await asked.JsonAsync(HttpStatusCode.Accepted)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task An_org_write_through_memory_save_waits_for_approval_then_is_saved_and_found()
    {
        await ApplyPolicyAsync();
        using var requester = app.ClientFor("max", Tenant, ["data"]);
        var session = (await (await requester.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

        var pending = await (await requester.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls",
            new { tool = "memory.save", arguments = new { @namespace = "org", content = "the release train leaves on thursdays" } })).JsonAsync(HttpStatusCode.Accepted);
        var before = await (await requester.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls",
            new { tool = "memory.search", arguments = new { @namespace = "org", query = "release train thursdays" } })).JsonAsync(HttpStatusCode.OK);
        Assert.Empty(before.GetProperty("result").GetProperty("items").EnumerateArray());

        using var approver = app.ClientFor("nora", Tenant, ["data"], [HarnessRoles.Approver]);
        (await approver.PostAsJsonAsync($"/v1/approvals/{pending.GetProperty("approvalId").GetGuid()}/decision", new { approve = true })).EnsureSuccessStatusCode();

        var found = 0;
        for (var i = 0; i < 100 && found == 0; i++)
        {
            await Task.Delay(100);
            var search = await (await requester.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls",
                new { tool = "memory.search", arguments = new { @namespace = "org", query = "release train thursdays" } })).JsonAsync(HttpStatusCode.OK);
            found = search.GetProperty("result").GetProperty("items").GetArrayLength();
        }

        Assert.Equal(1, found);
    }

    [Fact]
    public async Task A_team_namespace_the_caller_is_not_in_fails_the_tool_call_with_not_a_member()
    {
        await ApplyPolicyAsync();
        using var outsider = app.ClientFor("otto", Tenant, ["data"]);
        var session = (await (await outsider.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

        var call = await (await outsider.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls",
            new { tool = "memory.search", arguments = new { @namespace = "team:legal", query = "contract" } })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("failed", call.GetProperty("status").GetString());
        Assert.Equal("not_a_member", call.GetProperty("error").GetProperty("code").GetString());
    }
}
