using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Mcp;

/// <summary>
/// <c>/mcp</c> driven by an MCP client no one here wrote: the official TypeScript SDK, in a Node process, the way an
/// agent such as Claude Code reaches it. Every call gets what the HTTP API would give it.
/// </summary>
public sealed partial class McpServerTests(McpApplication app) : IClassFixture<McpApplication>
{
    private const string Tenant = McpApplication.Tenant;

    private string Maria => app.Token("maria", ["web"]);
    private string Olga => app.Token("olga", ["web"], [HarnessRoles.Approver]);

    private static object Client(string? token, Guid? session, params object[] steps) => new
    {
        token,
        headers = session is { } id ? new Dictionary<string, string> { ["Harness-Session"] = id.ToString() } : [],
        steps,
    };

    private static object Call(string name, object arguments, bool progress = false) => new { op = "call", name, arguments, progress };

    private static readonly object List = new { op = "list" };

    private static JsonElement Only(List<JsonElement> lines, string op, int client = 0) =>
        Assert.Single(lines, l => l.GetProperty("op").GetString() == op && l.GetProperty("client").GetInt32() == client);

    private static List<JsonElement> Results(List<JsonElement> lines, int client = 0) =>
        lines.Where(l => l.GetProperty("op").GetString() == "call" && l.GetProperty("client").GetInt32() == client)
            .Select(l => l.TryGetProperty("result", out var result) ? result : throw new Xunit.Sdk.XunitException($"The call failed in the client: {l}"))
            .ToList();

    private static string Text(JsonElement result) => result.GetProperty("content")[0].GetProperty("text").GetString()!;

    private static bool IsError(JsonElement result) => result.TryGetProperty("isError", out var e) && e.GetBoolean();

    private static string Meta(JsonElement result, string key) => result.GetProperty("_meta").GetProperty(key).ToString();

    private async Task<List<JsonElement>> EventsOfAsync(string user)
    {
        using var auditor = app.Http(app.Token("audrey", [], [HarnessRoles.Auditor]));
        return (await (await auditor.GetAsync($"/v1/audit/events?user={user}&limit=1000")).JsonAsync(HttpStatusCode.OK))
            .GetProperty("events").EnumerateArray().ToList();
    }

    private static bool IsEventOf(JsonElement e, string type, string callId) =>
        e.GetProperty("type").GetString() == type
        && e.TryGetProperty("payload", out var payload) && payload.ValueKind == JsonValueKind.Object
        && payload.TryGetProperty("callId", out var id) && id.GetString() == callId;

    [Fact]
    public async Task Without_a_token_mcp_answers_401_pointing_at_its_protected_resource_metadata()
    {
        using var anonymous = app.Http(null);
        var response = await anonymous.PostAsync("/mcp", new StringContent(
            """{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}""",
            Encoding.UTF8, "application/json"));

        await response.ProblemAsync(HttpStatusCode.Unauthorized, "unauthenticated");
        var challenge = response.Headers.WwwAuthenticate.ToString();
        var metadataUrl = $"{app.BaseUrl}/.well-known/oauth-protected-resource/mcp";
        Assert.Equal($"Bearer resource_metadata=\"{metadataUrl}\"", challenge);

        // The document is public and names this resource and the issuer whose tokens are accepted.
        var metadata = await (await anonymous.GetAsync(metadataUrl)).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(app.McpUrl, metadata.GetProperty("resource").GetString());
        Assert.Equal([app.Issuer.Authority], metadata.GetProperty("authorization_servers").EnumerateArray().Select(s => s.GetString()));
        Assert.Equal(["header"], metadata.GetProperty("bearer_methods_supported").EnumerateArray().Select(s => s.GetString()));

        // The official client, given no token, cannot connect.
        var lines = await TypeScriptMcpClient.RunAsync(app.McpUrl, [Client(null, null, List)]);
        Assert.Contains("401", Only(lines, "connect").GetProperty("error").GetString());
        Assert.DoesNotContain(lines, l => l.GetProperty("op").GetString() == "list");
    }

    [Fact]
    public async Task A_token_for_another_audience_is_refused_with_the_metadata_pointer()
    {
        var foreign = app.Issuer.CreateToken("maria", Tenant, ["web"], audience: "https://some-other-api.example");
        using var client = app.Http(foreign);
        var response = await client.PostAsync("/mcp", new StringContent(
            """{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}""", Encoding.UTF8, "application/json"));

        var problem = await response.ProblemAsync(HttpStatusCode.Unauthorized, "unauthenticated");
        Assert.Contains("audience", problem.GetProperty("detail").GetString());
        Assert.Equal($"Bearer error=\"invalid_token\", resource_metadata=\"{app.BaseUrl}/.well-known/oauth-protected-resource/mcp\"",
            response.Headers.WwwAuthenticate.ToString());

        var lines = await TypeScriptMcpClient.RunAsync(app.McpUrl, [Client(foreign, null, List)]);
        Assert.Contains("401", Only(lines, "connect").GetProperty("error").GetString());
    }

    [Fact]
    public async Task Tools_list_is_each_users_matrix_and_never_shows_a_locked_deny()
    {
        var lines = await TypeScriptMcpClient.RunAsync(app.McpUrl,
        [
            Client(Maria, null, List),
            Client(app.Token("sam", ["security"]), null, List),
            Client(app.Token("lee", ["web"]), null, List),
        ]);

        string[] Names(int client) => [.. Only(lines, "list", client).GetProperty("tools").EnumerateArray().Select(t => t.GetProperty("name").GetString()!)];
        Assert.Equal(["fs.list", "fs.read", "fs.write", "shell.exec"], Names(0));
        Assert.Equal(["fs.list", "fs.read", "shell.exec"], Names(1));
        Assert.Equal(["fs.list", "fs.read", "fs.search", "fs.write", "shell.exec"], Names(2));

        // Each tool comes with its description and its JSON Schema.
        var write = Only(lines, "list").GetProperty("tools").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "fs.write");
        Assert.False(string.IsNullOrWhiteSpace(write.GetProperty("description").GetString()));
        Assert.Equal("object", write.GetProperty("inputSchema").GetProperty("type").GetString());
        Assert.True(write.GetProperty("inputSchema").GetProperty("properties").TryGetProperty("path", out _));
    }

    [Fact]
    public async Task Allowed_calls_run_in_the_named_session_attributed_to_the_token_user_and_audited()
    {
        var session = await app.NewSessionAsync(Maria);
        var lines = await TypeScriptMcpClient.RunAsync(app.McpUrl,
        [
            Client(Maria, session,
                Call("fs.write", new { path = "src/hello.txt", content = "hello over mcp" }),
                Call("fs.read", new { path = "src/hello.txt" }),
                Call("shell.exec", new { command = "echo from-the-sandbox" })),
        ]);

        var (write, read, shell) = (Results(lines)[0], Results(lines)[1], Results(lines)[2]);
        Assert.False(IsError(write), Text(write));
        Assert.Equal(14, write.GetProperty("structuredContent").GetProperty("size").GetInt64());
        Assert.Equal("hello over mcp", read.GetProperty("structuredContent").GetProperty("content").GetString());
        Assert.Contains("from-the-sandbox", Text(shell));
        Assert.All([write, read, shell], r => Assert.Equal(session.ToString(), Meta(r, "harness/sessionId")));
        Assert.Equal("succeeded", Meta(read, "harness/status"));

        // The same records the HTTP API writes: the session's history and maria's audit trail.
        using var maria = app.Http(Maria);
        var history = (await (await maria.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK)).GetProperty("toolCalls").EnumerateArray().ToList();
        Assert.Equal(["fs.write", "fs.read", "shell.exec"], history.Select(c => c.GetProperty("tool").GetString()));
        var events = await EventsOfAsync("maria");
        var callId = Meta(write, "harness/callId");
        Assert.Contains(events, e => IsEventOf(e, "tool_call.decided", callId));
        var executed = Assert.Single(events, e => IsEventOf(e, "tool_call.executed", callId));
        Assert.Equal(Meta(write, "harness/auditSeq"), executed.GetProperty("seq").ToString());
    }

    [Fact]
    public async Task Denied_and_invalid_calls_are_tool_errors_with_the_problem_code()
    {
        var session = await app.NewSessionAsync(Maria);
        var lines = await TypeScriptMcpClient.RunAsync(app.McpUrl,
        [
            Client(Maria, session,
                Call("shell.exec", new { command = "rm -rf src" }),
                Call("fs.write", new { path = 5, content = "x" }),
                Call("fs.write", new { path = "elsewhere.txt", content = "x" }),
                Call("no.such.tool", new { }),
                Call("http.fetch", new { url = "https://example.com/" })),
        ]);

        var results = Results(lines);
        Assert.All(results, r => Assert.True(IsError(r), Text(r)));
        string Code(JsonElement r) => r.GetProperty("structuredContent").GetProperty("code").GetString()!;
        Assert.Equal(["denied", "invalid_arguments", "denied", "unknown_tool", "denied"], results.Select(Code));
        Assert.Contains("no deleting", Text(results[0]));
        Assert.Equal("denied", Meta(results[0], "harness/status"));
        Assert.Equal("/path", results[1].GetProperty("structuredContent").GetProperty("arguments")[0].GetProperty("path").GetString());
        Assert.Equal("rejected", Meta(results[1], "harness/status"));
        Assert.Contains("no egress", Text(results[4]));

        var events = await EventsOfAsync("maria");
        Assert.Contains(events, e => IsEventOf(e, "tool_call.decided", Meta(results[0], "harness/callId")));
        Assert.Contains(events, e => IsEventOf(e, "tool_call.rejected", Meta(results[1], "harness/callId")));
    }

    [Fact]
    public async Task Ask_holds_the_mcp_call_with_progress_until_another_user_approves_over_http()
    {
        var session = await app.NewSessionAsync(Maria);
        using var olga = app.Http(Olga);
        string? approval = null;
        var lines = await TypeScriptMcpClient.RunAsync(app.McpUrl,
            [Client(Maria, session, Call("fs.write", new { path = "reviewed/notes.md", content = "approved text" }, progress: true))],
            async line =>
            {
                if (line.GetProperty("op").GetString() == "progress" && approval is null)
                {
                    approval = ApprovalOf(line.GetProperty("message").GetString()!);
                    await (await olga.PostAsJsonAsync($"/v1/approvals/{approval}/decision", new { approve = true, comment = "fine" })).JsonAsync(HttpStatusCode.OK);
                }
            });

        // Progress came first, while the call was open; then the approved call's own result on that same call.
        Assert.Equal("progress", lines[0].GetProperty("op").GetString());
        var result = Assert.Single(Results(lines));
        Assert.False(IsError(result), Text(result));
        Assert.Equal(13, result.GetProperty("structuredContent").GetProperty("size").GetInt64());
        Assert.Equal("succeeded", Meta(result, "harness/status"));
        Assert.Equal(approval, Meta(result, "harness/approvalId"));

        using var maria = app.Http(Maria);
        var read = await (await maria.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.read", arguments = new { path = "reviewed/notes.md" } })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("approved text", read.GetProperty("result").GetProperty("content").GetString());
        var decided = Assert.Single(await EventsOfAsync("olga"), e => e.GetProperty("type").GetString() == "tool_call.approval_decided"
            && e.GetProperty("payload").GetProperty("approvalId").GetString() == approval);
        Assert.Equal("maria", decided.GetProperty("payload").GetProperty("requestedBy").GetString());
    }

    [Fact]
    public async Task Ask_rejected_over_http_is_a_tool_error_naming_who_rejected_and_why()
    {
        var session = await app.NewSessionAsync(Maria);
        using var olga = app.Http(Olga);
        var decided = false;
        var lines = await TypeScriptMcpClient.RunAsync(app.McpUrl,
            [Client(Maria, session, Call("fs.write", new { path = "reviewed/plan.md", content = "x" }, progress: true))],
            async line =>
            {
                if (line.GetProperty("op").GetString() == "progress" && !decided)
                {
                    decided = true;
                    var approval = ApprovalOf(line.GetProperty("message").GetString()!);
                    await (await olga.PostAsJsonAsync($"/v1/approvals/{approval}/decision", new { approve = false, comment = "not before the review" })).JsonAsync(HttpStatusCode.OK);
                }
            });

        var result = Assert.Single(Results(lines));
        Assert.True(IsError(result));
        Assert.Equal("approval_rejected", result.GetProperty("structuredContent").GetProperty("code").GetString());
        Assert.Contains("olga", Text(result));
        Assert.Contains("not before the review", Text(result));
        Assert.Equal("denied", Meta(result, "harness/status"));

        // Nothing was written.
        using var maria = app.Http(Maria);
        var read = await (await maria.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.read", arguments = new { path = "reviewed/plan.md" } })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("failed", read.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Another_tenants_or_users_session_is_refused_as_not_found()
    {
        var foreign = await app.NewSessionAsync(app.Token("mallory", ["web"], tenant: "elsewhere"));
        var colleagues = await app.NewSessionAsync(app.Token("lee", ["web"]));
        var lines = await TypeScriptMcpClient.RunAsync(app.McpUrl,
        [
            Client(Maria, foreign, Call("fs.read", new { path = "src/a.txt" })),
            Client(Maria, colleagues, Call("fs.read", new { path = "src/a.txt" })),
            Client(Maria, null, new { op = "call", name = "fs.list", arguments = new { }, meta = new Dictionary<string, string> { ["harness/sessionId"] = foreign.ToString() } }),
        ]);

        foreach (var client in new[] { 0, 1, 2 })
        {
            var result = Assert.Single(Results(lines, client));
            Assert.True(IsError(result));
            Assert.Equal("session_not_found", result.GetProperty("structuredContent").GetProperty("code").GetString());
        }

        Assert.Equal(0, await app.CountAsync("SELECT count(*) FROM tool_calls WHERE requested_by = 'maria' AND session_id = ANY($1)", new[] { foreign, colleagues }));
    }

    [Fact]
    public async Task Two_clients_at_once_one_held_for_approval_the_other_running_on()
    {
        var mariaSession = await app.NewSessionAsync(Maria);
        var lee = app.Token("lee", ["web"]);
        var leeSession = await app.NewSessionAsync(lee);
        using var olga = app.Http(Olga);
        var (approved, leeDone) = (false, 0);
        var lines = await TypeScriptMcpClient.RunAsync(app.McpUrl,
            [
                Client(Maria, mariaSession, Call("fs.write", new { path = "reviewed/a.md", content = "a" }, progress: true)),
                Client(lee, leeSession,
                    Call("fs.write", new { path = "src/b.txt", content = "bb" }),
                    Call("fs.read", new { path = "src/b.txt" })),
            ],
            async line =>
            {
                if (line.GetProperty("op").GetString() == "call" && line.GetProperty("client").GetInt32() == 1)
                {
                    leeDone++;
                }

                // Maria's held call is approved only once lee's calls are through: her wait held nobody else up.
                if (!approved && leeDone == 2 && line.GetProperty("op").GetString() == "progress")
                {
                    approved = true;
                    await (await olga.PostAsJsonAsync($"/v1/approvals/{ApprovalOf(line.GetProperty("message").GetString()!)}/decision", new { approve = true })).JsonAsync(HttpStatusCode.OK);
                }
            });

        var leeResults = Results(lines, 1);
        Assert.Equal("bb", leeResults[1].GetProperty("structuredContent").GetProperty("content").GetString());
        Assert.All(leeResults, r => Assert.Equal(leeSession.ToString(), Meta(r, "harness/sessionId")));
        var held = Assert.Single(Results(lines, 0));
        Assert.False(IsError(held), Text(held));
        Assert.Equal(mariaSession.ToString(), Meta(held, "harness/sessionId"));
        Assert.True(lines.FindIndex(l => l.GetProperty("op").GetString() == "call" && l.GetProperty("client").GetInt32() == 1)
            < lines.FindIndex(l => l.GetProperty("op").GetString() == "call" && l.GetProperty("client").GetInt32() == 0));

        // Each call is attributed to its own token's user.
        Assert.Contains(await EventsOfAsync("lee"), e => IsEventOf(e, "tool_call.executed", Meta(leeResults[0], "harness/callId")));
        Assert.Contains(await EventsOfAsync("maria"), e => IsEventOf(e, "tool_call.executed", Meta(held, "harness/callId")));
    }

    private static string ApprovalOf(string progressMessage) =>
        ApprovalInMessage().Match(progressMessage) is { Success: true } match
            ? match.Groups[1].Value
            : throw new Xunit.Sdk.XunitException($"No approval id in the progress message: {progressMessage}");

    [GeneratedRegex("approval ([0-9a-f-]{36})")]
    private static partial Regex ApprovalInMessage();
}
