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

    // 5.0 is an integer to JSON Schema; the executor read it with GetInt32, threw, answered 500 and left the call running.
    [Fact]
    public async Task Review_integral_timeout_written_with_a_fraction_runs()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);

        var call = await CallAsync(client, session, """{"tool":"shell.exec","arguments":{"command":"echo hi","timeoutSeconds":5.0}}""");

        Assert.Equal("succeeded", call.GetProperty("status").GetString());
        Assert.Equal("succeeded", await client.WaitForCallStatusAsync(session, call.GetProperty("id").GetGuid(), "succeeded"));
    }

    // The same fault in an approved call escaped the approved-call executor, which stopped the whole server.
    [Fact]
    public async Task Review_approved_call_with_a_fractional_integer_runs_and_the_server_keeps_serving()
    {
        using var requester = Member("rita");
        var session = await NewSessionAsync(requester);
        var pending = await CallAsync(requester, session,
            """{"tool":"shell.exec","arguments":{"command":"printf ok","timeoutSeconds":7.0}}""", HttpStatusCode.Accepted);

        using var approver = app.ClientFor("anna", Tenant, ["web"], [HarnessRoles.Approver]);
        await (await approver.PostAsJsonAsync($"/v1/approvals/{pending.GetProperty("approvalId").GetGuid()}/decision", new { approve = true }))
            .JsonAsync(HttpStatusCode.OK);

        Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(session, pending.GetProperty("id").GetGuid(), "succeeded"));
        var later = await CallAsync(requester, session, """{"tool":"shell.exec","arguments":{"command":"echo still here"}}""");
        Assert.Equal("succeeded", later.GetProperty("status").GetString());
    }

    // JsonSchema.Net let 1e400 pass "maximum": 86400; the executor (and the audit's canonical JSON) then threw: 500.
    [Theory]
    [InlineData("""{"tool":"shell.exec","arguments":{"command":"echo hi","timeoutSeconds":1e400}}""")]
    [InlineData("""{"tool":"shell.exec","arguments":{"command":"echo hi","timeoutSeconds":-1e400}}""")]
    [InlineData("""{"tool":"fs.read","arguments":{"path":"src/a.txt","x":[1e999]}}""")]
    public async Task Review_out_of_range_number_is_a_400_not_a_500(string body)
    {
        using var client = Member();
        var session = await NewSessionAsync(client);

        var problem = await (await RawCallAsync(client, session, body)).ProblemAsync(HttpStatusCode.BadRequest, "invalid_arguments");
        var history = await (await client.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);

        Assert.Contains("out of range", problem.GetProperty("detail").GetString());
        Assert.Empty(history.GetProperty("toolCalls").EnumerateArray());
    }

    // A tool name no tool can have was stored into a 200-character column and an audit field: 500.
    [Fact]
    public async Task Review_overlong_tool_name_is_a_400_not_a_500()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);

        var response = await RawCallAsync(client, session, "{\"tool\":\"" + new string('a', 300) + "\",\"arguments\":{}}");

        await response.ProblemAsync(HttpStatusCode.BadRequest, "invalid_tool_name");
    }

    // Duplicate names make "the arguments" ambiguous: the policy, the executor, the audit record and whoever reads the
    // stored call (an approver's UI, an export verifier) may each pick a different one of the values.
    [Theory]
    [InlineData("""{"path":"secret/b.txt","path":"src/a.txt"}""")]
    [InlineData("""{"path":"src/a.txt","path":"src/a.txt"}""")]
    [InlineData("""{"path":"src/a.txt","x":{"k":1,"k":2}}""")]
    public async Task Review_duplicate_argument_names_are_a_400_and_nothing_runs(string arguments)
    {
        using var client = Member();
        var session = await NewSessionAsync(client);

        var response = await RawCallAsync(client, session, "{\"tool\":\"fs.read\",\"arguments\":" + arguments + "}");
        var problem = await response.ProblemAsync(HttpStatusCode.BadRequest, "invalid_arguments");
        var history = await (await client.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);

        Assert.Contains("duplicate", problem.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.Empty(history.GetProperty("toolCalls").EnumerateArray());
    }

    [Fact]
    public async Task Review_tool_schema_with_a_non_string_type_is_a_400()
    {
        using var admin = app.ClientFor("root", Tenant, roles: [HarnessRoles.Admin]);

        var response = await admin.PostAsync("/v1/admin/tools", new StringContent(
            """{"name":"typed","schema":{"type":["object"]},"argv":["echo"]}""", Encoding.UTF8, "application/json"));

        await response.ProblemAsync(HttpStatusCode.BadRequest, "invalid_tool");
    }

    // Enum.TryParse accepts any number ("99"), which is no status of the contract.
    [Theory]
    [InlineData("1")]
    [InlineData("99")]
    [InlineData("-1")]
    public async Task Review_numeric_approval_status_is_a_400(string status)
    {
        using var approver = app.ClientFor("anna", Tenant, ["web"], [HarnessRoles.Approver]);

        await (await approver.GetAsync($"/v1/approvals?status={status}")).ProblemAsync(HttpStatusCode.BadRequest, "invalid_status");
    }

    // Claims longer than their columns failed the just-in-time upsert, which answered 503 "database unavailable" forever.
    [Theory]
    [InlineData("user")]
    [InlineData("team")]
    [InlineData("name")]
    [InlineData("tenant")]
    public async Task Review_oversized_identity_claims_are_refused_as_401(string which)
    {
        var big = new string('x', 500);
        using var client = which switch
        {
            "user" => app.ClientFor(big, Tenant, ["web"]),
            "team" => app.ClientFor("long-team", Tenant, [big]),
            "name" => app.ClientFor("long-name", Tenant, ["web"], name: big + big),
            _ => app.ClientFor("long-tenant", big, ["web"]),
        };

        var problem = await (await client.GetAsync("/v1/me")).ProblemAsync(HttpStatusCode.Unauthorized);
        Assert.Contains("characters", problem.GetProperty("detail").GetString());
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
