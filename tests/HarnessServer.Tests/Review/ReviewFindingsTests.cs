using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Review;

/// <summary>Regression tests for the findings of the security review (each names what was wrong).</summary>
public sealed class ReviewFindingsTests(ReviewApplication app) : IClassFixture<ReviewApplication>
{
    private const string Tenant = ReviewApplication.Tenant;

    private HttpClient Member(string user = "maria") => app.ClientFor(user, Tenant, ["web"]);

    private static async Task<Guid> NewSessionAsync(HttpClient client) =>
        (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

    private static Task<HttpResponseMessage> RawCallAsync(HttpClient client, Guid session, string json) =>
        client.PostAsync($"/v1/sessions/{session}/tool-calls", new StringContent(json, Encoding.UTF8, "application/json"));

    private static async Task<JsonElement> CallAsync(HttpClient client, Guid session, string json, HttpStatusCode expected = HttpStatusCode.OK) =>
        await (await RawCallAsync(client, session, json)).JsonAsync(expected);

    private static async Task<string?> WaitForCallAsync(HttpClient client, Guid session, Guid call, string expected)
    {
        string? status = null;
        for (var i = 0; i < 100 && status != expected; i++)
        {
            var view = await (await client.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
            status = view.GetProperty("toolCalls").EnumerateArray().Single(c => c.GetProperty("id").GetGuid() == call).GetProperty("status").GetString();
            if (status != expected)
            {
                await Task.Delay(100);
            }
        }

        return status;
    }

    // The file tools accept "/workspace/x" (the sandbox mount point) as "x", so the policy must decide it as "x" too.
    [Fact]
    public async Task Review_absolute_workspace_path_is_decided_as_the_file_tools_resolve_it()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);
        await CallAsync(client, session, """{"tool":"fs.write","arguments":{"path":"src/a.txt","content":"hi"}}""");

        var absolute = await CallAsync(client, session, """{"tool":"fs.read","arguments":{"path":"/workspace/src/a.txt"}}""");
        var dotted = await CallAsync(client, session, """{"tool":"fs.read","arguments":{"path":"/workspace/./x/../src/a.txt"}}""");
        var outside = await CallAsync(client, session, """{"tool":"fs.read","arguments":{"path":"/workspace/secret/b.txt"}}""");

        Assert.Equal("succeeded", absolute.GetProperty("status").GetString());
        Assert.Equal("hi", absolute.GetProperty("result").GetProperty("content").GetString());
        Assert.Equal("succeeded", dotted.GetProperty("status").GetString());
        Assert.Equal("denied", outside.GetProperty("status").GetString());
        Assert.Equal("no rule matched; org default (deny)", outside.GetProperty("decision").GetProperty("reason").GetString());
    }
}


public sealed class ReviewApplication : HarnessApplication
{
    public const string Tenant = "review";

    public const string OrgPolicy = """
        default: deny
        rules:
          - tool: "fs.*"
            effect: allow
            args: { path: "src/**" }
          - tool: "shell.exec"
            effect: allow
            args: { command: ["echo *"] }
          - tool: "shell.exec"
            effect: ask
            args: { command: ["printf *"] }
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
