using System.Net;
using System.Net.Http.Headers;
using System.Text;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Policies;

public sealed partial class PolicyAdminApiTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private const string Tenant = "policy-admin";

    private HttpClient Admin() => app.ClientFor("root", Tenant, ["platform"], [HarnessRoles.Admin]);

    private static StringContent Yaml(string text) => new(text, Encoding.UTF8, "application/yaml");

    [Fact]
    public async Task Put_then_get_returns_the_document_with_its_version_as_etag()
    {
        using var admin = Admin();
        var put = await admin.PutAsync("/v1/admin/policies/teams/ops", Yaml("rules:\n  - tool: fs.read\n    effect: allow\n"));
        var stored = await put.JsonAsync(HttpStatusCode.OK);

        var get = await admin.GetAsync("/v1/admin/policies/teams/ops");

        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Equal($"\"{stored.GetProperty("version").GetInt32()}\"", get.Headers.ETag?.Tag);
        Assert.Contains("fs.read", await get.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Stale_if_match_is_412_and_stores_nothing()
    {
        using var admin = Admin();
        (await admin.PutAsync("/v1/admin/policies/teams/data", Yaml("rules: []\n"))).EnsureSuccessStatusCode();
        var etag = (await admin.GetAsync("/v1/admin/policies/teams/data")).Headers.ETag!.Tag;
        (await admin.PutAsync("/v1/admin/policies/teams/data", Yaml("rules:\n  - tool: fs.list\n    effect: allow\n"))).EnsureSuccessStatusCode();

        using var stale = new HttpRequestMessage(HttpMethod.Put, "/v1/admin/policies/teams/data") { Content = Yaml("rules:\n  - tool: '*'\n    effect: allow\n") };
        stale.Headers.IfMatch.Add(new EntityTagHeaderValue(etag));
        await (await admin.SendAsync(stale)).ProblemAsync(HttpStatusCode.PreconditionFailed, "version_mismatch");

        var current = await (await admin.GetAsync("/v1/admin/policies/teams/data")).Content.ReadAsStringAsync();
        Assert.Contains("fs.list", current);
        Assert.DoesNotContain("'*'", current);
    }

    [Theory]
    [InlineData("rules:\n  - tool: fs.read\n    effect: maybe\n", 3)]
    [InlineData("rules:\n  - tool: fs.read\n    effect: allow\n    colour: blue\n", 4)]
    [InlineData("rules:\n  - tool: fs.read\n    effect: deny\n    locked: true\n", 4)]
    public async Task Invalid_body_is_400_with_line_and_nothing_stored(string body, int line)
    {
        using var admin = Admin();
        var team = $"bad{line}{body.Length}";

        var problem = await (await admin.PutAsync($"/v1/admin/policies/teams/{team}", Yaml(body))).ProblemAsync(HttpStatusCode.BadRequest, "invalid_policy");

        Assert.Equal(line, problem.GetProperty("errors")[0].GetProperty("line").GetInt32());
        await (await admin.GetAsync($"/v1/admin/policies/teams/{team}")).ProblemAsync(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Change_takes_effect_for_the_next_decision_and_is_audited()
    {
        using var admin = Admin();
        using var user = app.ClientFor("worker", Tenant, ["build"]);
        (await admin.PutAsync("/v1/admin/policies/org", Yaml("default: deny\nrules: []\n"))).EnsureSuccessStatusCode();
        Assert.Equal("deny", await EffectOfAsync(user, "fs.read"));

        (await admin.PutAsync("/v1/admin/policies/teams/build", Yaml("rules:\n  - tool: fs.read\n    effect: allow\n"))).EnsureSuccessStatusCode();

        Assert.Equal("allow", await EffectOfAsync(user, "fs.read"));
        using var auditor = app.ClientFor("rev", Tenant, roles: [HarnessRoles.Auditor]);
        var events = await (await auditor.GetAsync("/v1/audit/events?limit=1000")).JsonAsync(HttpStatusCode.OK);
        Assert.Contains(events.GetProperty("events").EnumerateArray(), e => e.GetProperty("type").GetString() == "policy.changed");
    }

    [Fact]
    public async Task Simulate_explains_the_deciding_rule()
    {
        using var admin = Admin();
        (await admin.PutAsync("/v1/admin/policies/org", Yaml("default: deny\nrules:\n  - tool: http.fetch\n    effect: deny\n    locked: true\n    reason: no egress\n"))).EnsureSuccessStatusCode();
        (await admin.PutAsync("/v1/admin/policies/users/bob", Yaml("rules:\n  - tool: http.fetch\n    effect: allow\n"))).EnsureSuccessStatusCode();

        var result = await (await admin.PostJsonAsync("/v1/admin/policies/simulate",
            new { user = "bob", teams = Array.Empty<string>(), tool = "http.fetch", arguments = new { url = "https://x.example" } })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("deny", result.GetProperty("effect").GetString());
        Assert.Equal("org", result.GetProperty("level").GetString());
        Assert.True(result.GetProperty("locked").GetBoolean());
        Assert.Equal(0, result.GetProperty("index").GetInt32());
    }

    [Fact]
    public async Task Members_cannot_edit_policies()
    {
        using var member = app.ClientFor("nobody", Tenant);

        await (await member.PutAsync("/v1/admin/policies/org", Yaml("rules: []\n"))).ProblemAsync(HttpStatusCode.Forbidden);
    }

    private static async Task<string?> EffectOfAsync(HttpClient user, string tool)
    {
        var matrix = await (await user.GetAsync("/v1/me/permissions")).JsonAsync(HttpStatusCode.OK);
        return matrix.GetProperty("tools").EnumerateArray().Single(t => t.GetProperty("tool").GetString() == tool).GetProperty("effect").GetString();
    }
}
