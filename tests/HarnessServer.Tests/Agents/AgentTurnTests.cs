using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Agents;
using HarnessServer.Identity;
using HarnessServer.Pipeline;
using HarnessServer.Sessions;
using HarnessServer.Tests.Http;
using HarnessServer.Tests.Infrastructure;
using HarnessServer.Tools;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.Connectors.OpenAI;

namespace HarnessServer.Tests.Agents;

[Collection(AgentCollection.Name)]
public sealed class AgentTurnTests(AgentTurnTests.AgentApplication app) : IClassFixture<AgentTurnTests.AgentApplication>
{
    public const string Tenant = "agents";

    /// <summary>The server with a scripted model, a small context budget and fast approval and recovery passes.</summary>
    public sealed class AgentApplication : HarnessApplication
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
                args: { command: ["echo *", "ls *"] }
              - tool: "shell.exec"
                effect: deny
                args: { command: ["rm *"] }
                reason: "no deleting"
              - tool: "http.fetch"
                effect: deny
                reason: "no egress from agents"
            """;

        public ScriptedModelServer Model { get; private set; } = null!;

        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["Harness:Model:Endpoint"] = Model.Endpoint;
            settings["Harness:Model:ApiKey"] = "test-key";
            settings["Harness:Model:Id"] = "scripted-model";
            settings["Harness:Agent:ContextTokenBudget"] = "500";
            settings["Harness:Agent:RecentTurns"] = "1";
            settings["Harness:Agent:MaxIterations"] = "2";
            // Long, so the tests show approvals and resume continue turns at once, not at the next timed pass.
            settings["Harness:Agent:RecoveryInterval"] = "00:05:00";
            settings["Harness:Approvals:PollInterval"] = "00:00:00.200";
        }

        public override async ValueTask DisposeAsync()
        {
            await base.DisposeAsync();
            await Model.DisposeAsync();
        }

        public override async Task InitializeAsync()
        {
            Model = await ScriptedModelServer.StartAsync();
            await base.InitializeAsync();
            using var admin = ClientFor("admin", Tenant, roles: [HarnessRoles.Admin]);
            var put = await admin.PutAsync("/v1/admin/policies/org", new StringContent(OrgPolicy, Encoding.UTF8, "application/yaml"));
            put.EnsureSuccessStatusCode();
        }
    }

    private ScriptedModelServer Model
    {
        get
        {
            app.Model.Reset();
            return app.Model;
        }
    }

    private HttpClient Member(string user = "maria") => app.ClientFor(user, Tenant, ["web"]);

    private static async Task<Guid> NewSessionAsync(HttpClient client) =>
        (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

    private static Task<HttpResponseMessage> SendAsync(HttpClient client, Guid session, string content) =>
        client.PostAsJsonAsync($"/v1/sessions/{session}/messages", new { content });

    private static async Task<string?> ReadFileAsync(HttpClient client, Guid session, string path)
    {
        var read = await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.read", arguments = new { path } })).JsonAsync(HttpStatusCode.OK);
        return read.GetProperty("status").GetString() == "succeeded" ? read.GetProperty("result").GetProperty("content").GetString() : null;
    }

    /// <summary>The messages of one request to the model with this role.</summary>
    private static List<JsonElement> Messages(JsonElement request, string role) =>
        request.GetProperty("messages").EnumerateArray().Where(m => m.GetProperty("role").GetString() == role).ToList();

    private static string ContentOf(JsonElement message) =>
        message.GetProperty("content") is { ValueKind: JsonValueKind.String } text ? text.GetString()!
            : string.Concat(message.GetProperty("content").EnumerateArray().Select(p => p.GetProperty("text").GetString()));

    [Fact]
    public async Task A_turn_writes_a_file_through_a_model_proposed_call()
    {
        var model = Model.Call("fs_write", new { path = "notes/todo.txt", content = "buy milk" }).Reply("I wrote notes/todo.txt.");
        using var client = Member();
        var session = await NewSessionAsync(client);

        var turn = await (await SendAsync(client, session, "Write my todo list.")).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("completed", turn.GetProperty("status").GetString());
        Assert.Equal("I wrote notes/todo.txt.", turn.GetProperty("reply").GetString());
        var call = Assert.Single(turn.GetProperty("toolCalls").EnumerateArray());
        Assert.Equal("fs.write", call.GetProperty("tool").GetString());
        Assert.Equal("succeeded", call.GetProperty("status").GetString());
        Assert.Equal("buy milk", await ReadFileAsync(client, session, "notes/todo.txt"));

        // The model was told the result of its call, answering the call id it proposed.
        var second = model.Requests[1];
        var result = Assert.Single(Messages(second, "tool"));
        Assert.Contains("\"succeeded\"", ContentOf(result));
        var proposed = Assert.Single(Messages(second, "assistant")).GetProperty("tool_calls")[0];
        Assert.Equal("fs_write", proposed.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal(proposed.GetProperty("id").GetString(), result.GetProperty("tool_call_id").GetString());
        Assert.Equal("buy milk", JsonDocument.Parse(proposed.GetProperty("function").GetProperty("arguments").GetString()!).RootElement.GetProperty("content").GetString());

        // The chain shows the turn around its call: started (the message by hash), the call's stages, ended.
        using var auditor = app.ClientFor("admin", Tenant, roles: [HarnessRoles.Admin]);
        var page = await (await auditor.GetAsync("/v1/audit/events?limit=1000")).JsonAsync(HttpStatusCode.OK);
        var events = page.GetProperty("events").EnumerateArray()
            .Where(e => e.GetProperty("sessionId").ValueKind == JsonValueKind.String && e.GetProperty("sessionId").GetGuid() == session).ToList();
        var types = events.Select(e => e.GetProperty("type").GetString()!).ToList();
        Assert.Equal("session.created", types[0]);
        Assert.Equal("agent.turn_started", types[1]);
        // Then the turn's one call, then its end (the read of the file by this test comes after).
        var ended = types.IndexOf("agent.turn_ended");
        Assert.All(types[2..ended], t => Assert.StartsWith("tool_call.", t));
        Assert.Single(types[2..ended], t => t == "tool_call.executed");
        var started = events[1].GetProperty("payload");
        Assert.Equal(turn.GetProperty("turnId").GetString(), started.GetProperty("turnId").GetString());
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes("Write my todo list."))),
            started.GetProperty("messageSha256").GetString());
        Assert.DoesNotContain("Write my todo list.", page.ToString());
        Assert.Equal("completed", events[ended].GetProperty("payload").GetProperty("status").GetString());
    }

    [Fact]
    public async Task A_note_the_model_saves_shows_the_session_and_turn_that_wrote_it()
    {
        const string tenant = "agents-provenance";
        using var admin = app.ClientFor("root", tenant, roles: [HarnessRoles.Admin]);
        (await admin.PutAsync("/v1/admin/policies/org", new StringContent("""
            default: deny
            rules:
              - tool: "memory.*"
                effect: allow
            """, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
        Model.Call("memory_save", new { @namespace = "user", content = "Maria prefers blue-green releases for the billing service." }).Reply("Saved.");
        using var maria = app.ClientFor("maria", tenant, name: "Maria Lopez");
        var session = await NewSessionAsync(maria);

        var turn = await (await SendAsync(maria, session, "Remember how I like to release billing.")).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("succeeded", Assert.Single(turn.GetProperty("toolCalls").EnumerateArray()).GetProperty("status").GetString());
        var found = await (await maria.PostAsJsonAsync("/v1/memory/user/search", new { query = "billing releases" })).JsonAsync(HttpStatusCode.OK);
        var item = Assert.Single(found.GetProperty("items").EnumerateArray());
        Assert.Equal(turn.GetProperty("turnId").GetGuid(), item.GetProperty("turnId").GetGuid());
        Assert.Equal(session, item.GetProperty("sessionId").GetGuid());
        Assert.Equal("maria", item.GetProperty("author").GetProperty("id").GetString());
        Assert.Equal("Maria Lopez", item.GetProperty("author").GetProperty("name").GetString());
        Assert.Equal("user", item.GetProperty("namespace").GetString());
    }

    [Fact]
    public async Task A_denied_tool_is_not_offered_to_the_model()
    {
        var model = Model.Reply("Hello.");
        using var client = Member();
        var session = await NewSessionAsync(client);

        await (await SendAsync(client, session, "Hi")).JsonAsync(HttpStatusCode.OK);

        var offered = model.Requests[0].GetProperty("tools").EnumerateArray()
            .Select(t => t.GetProperty("function").GetProperty("name").GetString()).ToList();
        Assert.Contains("fs_write", offered);
        Assert.Contains("fs_read", offered);
        // shell.exec has allow rules for some commands, so it is offered; each call is decided on its own.
        Assert.Contains("shell_exec", offered);
        Assert.DoesNotContain("http_fetch", offered);
        Assert.DoesNotContain("memory_save", offered);
        var schema = model.Requests[0].GetProperty("tools").EnumerateArray()
            .Single(t => t.GetProperty("function").GetProperty("name").GetString() == "fs_write").GetProperty("function").GetProperty("parameters");
        Assert.Equal("string", schema.GetProperty("properties").GetProperty("path").GetProperty("type").GetString());
        Assert.Contains("content", schema.GetProperty("required").EnumerateArray().Select(r => r.GetString()));
    }

    [Fact]
    public async Task A_proposed_rm_rf_is_denied_and_the_denial_is_reported_back_to_the_model()
    {
        var model = Model.Call("shell_exec", new { command = "rm -rf /workspace" }).Reply("I may not delete files.");
        using var client = Member();
        var session = await NewSessionAsync(client);

        var turn = await (await SendAsync(client, session, "Clean everything up.")).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("completed", turn.GetProperty("status").GetString());
        var call = Assert.Single(turn.GetProperty("toolCalls").EnumerateArray());
        Assert.Equal("denied", call.GetProperty("status").GetString());
        var told = ContentOf(Assert.Single(Messages(model.Requests[1], "tool")));
        Assert.Contains("\"denied\"", told);
        Assert.Contains("no deleting", told);
    }

    [Fact]
    public async Task Bad_arguments_are_rejected_before_execution_and_the_model_reads_why()
    {
        var model = Model.Call("fs_write", new { path = 5, content = "x" }).Reply("Sorry.");
        using var client = Member();
        var session = await NewSessionAsync(client);

        var turn = await (await SendAsync(client, session, "Write something.")).JsonAsync(HttpStatusCode.OK);

        var call = Assert.Single(turn.GetProperty("toolCalls").EnumerateArray());
        Assert.Equal("rejected", call.GetProperty("status").GetString());
        Assert.Equal("invalid_arguments", call.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("invalid_arguments", ContentOf(Assert.Single(Messages(model.Requests[1], "tool"))));
        var checkpoints = await (await client.GetAsync($"/v1/sessions/{session}/checkpoints")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(0, checkpoints.GetArrayLength());
    }

    [Fact]
    public async Task An_ask_pauses_the_turn_and_it_continues_by_itself_after_approval()
    {
        var model = Model.Call("fs_write", new { path = "reviewed/plan.md", content = "the plan" }).Reply("The plan is written.");
        using var client = Member();
        var session = await NewSessionAsync(client);

        var waiting = await (await SendAsync(client, session, "Write the plan.")).JsonAsync(HttpStatusCode.Accepted);
        Assert.Equal("waiting_for_approval", waiting.GetProperty("status").GetString());
        var pending = Assert.Single(waiting.GetProperty("toolCalls").EnumerateArray());
        Assert.Equal("pending_approval", pending.GetProperty("status").GetString());
        await (await SendAsync(client, session, "Are you there?")).ProblemAsync(HttpStatusCode.Conflict, "turn_in_progress");

        using var approver = app.ClientFor("anna", Tenant, ["web"], [HarnessRoles.Approver]);
        await (await approver.PostAsJsonAsync($"/v1/approvals/{pending.GetProperty("approvalId").GetGuid()}/decision", new { approve = true, comment = "ok" }))
            .JsonAsync(HttpStatusCode.OK);

        var turnUrl = $"/v1/sessions/{session}/turns/{waiting.GetProperty("turnId").GetGuid()}";
        var turn = await EventuallyAsync(client, turnUrl, t => t.GetProperty("status").GetString() == "completed");
        Assert.Equal("The plan is written.", turn.GetProperty("reply").GetString());
        Assert.Equal("succeeded", Assert.Single(turn.GetProperty("toolCalls").EnumerateArray()).GetProperty("status").GetString());
        Assert.Equal("the plan", await ReadFileAsync(client, session, "reviewed/plan.md"));
        Assert.Contains("\"succeeded\"", ContentOf(Assert.Single(Messages(model.Requests[1], "tool"))));
    }

    [Fact]
    public async Task A_long_session_is_compacted_and_the_model_still_gets_the_summary()
    {
        var model = Model
            .Reply("Noted.", completionTokens: 2)
            .Reply("SUMMARY: the user's favourite tea is sencha.")
            .Reply("Your favourite tea is sencha.");
        using var client = Member();
        var session = await NewSessionAsync(client);
        var padding = new string('x', 1000);

        await (await SendAsync(client, session, $"FIRST-TURN my favourite tea is sencha. {padding}")).JsonAsync(HttpStatusCode.OK);
        var turn = await (await SendAsync(client, session, $"What is my favourite tea? {padding}")).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("Your favourite tea is sencha.", turn.GetProperty("reply").GetString());
        var summarise = model.Requests[1];
        Assert.False(summarise.TryGetProperty("tools", out _));
        Assert.Contains("FIRST-TURN", ContentOf(Messages(summarise, "user")[0]));
        var last = model.Requests[2];
        Assert.Contains(Messages(last, "system"), m => ContentOf(m).Contains("SUMMARY: the user's favourite tea is sencha."));
        Assert.DoesNotContain(Messages(last, "user"), m => ContentOf(m).Contains("FIRST-TURN"));

        // The full history stays: both user messages and the summary.
        var history = await (await client.GetAsync($"/v1/sessions/{session}/messages")).JsonAsync(HttpStatusCode.OK);
        Assert.Contains(history.EnumerateArray(), m => m.GetProperty("role").GetString() == "summary");
        Assert.Equal(2, history.EnumerateArray().Count(m => m.GetProperty("role").GetString() == "user"));
        var usage = await (await client.GetAsync($"/v1/sessions/{session}/usage")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(3, usage.GetProperty("calls").GetInt32());
        Assert.True(usage.GetProperty("inputTokens").GetInt32() > 0);
    }

    [Fact]
    public async Task Rollback_restores_the_workspace_after_a_model_proposed_overwrite()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);
        await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.write", arguments = new { path = "doc.txt", content = "original" } }))
            .JsonAsync(HttpStatusCode.OK);
        Model.Call("fs_write", new { path = "doc.txt", content = "overwritten by the model" }).Call("fs_write", new { path = "extra.txt", content = "new" }).Reply("Done.");

        await (await SendAsync(client, session, "Rewrite the doc.")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("overwritten by the model", await ReadFileAsync(client, session, "doc.txt"));

        var checkpoints = await (await client.GetAsync($"/v1/sessions/{session}/checkpoints")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(3, checkpoints.GetArrayLength());
        var beforeOverwrite = checkpoints.EnumerateArray().Single(c =>
            c.GetProperty("followedBy").GetProperty("arguments").GetProperty("content").GetString() == "overwritten by the model");
        Assert.Equal("fs.write", beforeOverwrite.GetProperty("followedBy").GetProperty("tool").GetString());

        var rollback = await (await client.PostAsJsonAsync($"/v1/sessions/{session}/rollback", new { checkpoint = beforeOverwrite.GetProperty("id").GetGuid() }))
            .JsonAsync(HttpStatusCode.OK);

        Assert.True(rollback.GetProperty("messagesRolledBack").GetInt32() > 0);
        Assert.Equal("original", await ReadFileAsync(client, session, "doc.txt"));
        Assert.Null(await ReadFileAsync(client, session, "extra.txt"));
        var history = await (await client.GetAsync($"/v1/sessions/{session}/messages")).JsonAsync(HttpStatusCode.OK);
        Assert.True(history.EnumerateArray().Last().GetProperty("rolledBack").GetBoolean());
        Assert.False(history.EnumerateArray().First().GetProperty("rolledBack").GetBoolean());
    }

    [Fact]
    public async Task A_second_concurrent_message_to_one_session_gets_409()
    {
        var release = new TaskCompletionSource();
        var model = Model.ReplyWhen(release.Task, "Finally.");
        using var client = Member();
        var session = await NewSessionAsync(client);

        var first = SendAsync(client, session, "Take your time.");
        await model.WaitForRequestsAsync(1);
        await (await SendAsync(client, session, "Me too!")).ProblemAsync(HttpStatusCode.Conflict, "turn_in_progress");
        release.SetResult();

        Assert.Equal("completed", (await (await first).JsonAsync(HttpStatusCode.OK)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task A_paused_session_stops_its_turn_after_the_current_step_and_resume_continues_it()
    {
        var release = new TaskCompletionSource();
        var model = Model.Call("fs_write", new { path = "after-resume.txt", content = "resumed" }).HeldUntil(release.Task).Reply("Written.");
        using var client = Member();
        var session = await NewSessionAsync(client);

        var sending = SendAsync(client, session, "Write a file.");
        await model.WaitForRequestsAsync(1);
        await (await client.PostAsync($"/v1/sessions/{session}/pause", null)).JsonAsync(HttpStatusCode.OK);
        release.SetResult();

        var paused = await (await sending).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("paused", paused.GetProperty("status").GetString());
        Assert.Empty(paused.GetProperty("toolCalls").EnumerateArray());
        await (await SendAsync(client, session, "Hello?")).ProblemAsync(HttpStatusCode.Conflict, "session_paused");

        await (await client.PostAsync($"/v1/sessions/{session}/resume", null)).JsonAsync(HttpStatusCode.OK);

        var turn = await EventuallyAsync(client, $"/v1/sessions/{session}/turns/{paused.GetProperty("turnId").GetGuid()}",
            t => t.GetProperty("status").GetString() == "completed");
        Assert.Equal("Written.", turn.GetProperty("reply").GetString());
        Assert.Equal("resumed", await ReadFileAsync(client, session, "after-resume.txt"));
        Assert.Equal(2, model.Requests.Count);
    }

    [Fact]
    public async Task A_turn_ends_after_max_iterations_rounds_ran_and_every_call_has_its_answer()
    {
        var model = Model;
        var before = model.Requests.Count;
        for (var i = 0; i < 2; i++)
        {
            model.Call("fs_list", new { path = "." });
        }

        using var client = Member();
        var session = await NewSessionAsync(client);

        var turn = await (await SendAsync(client, session, "Loop forever.")).JsonAsync(HttpStatusCode.OK);

        // MaxIterations (2) bounds the rounds that run: two rounds of calls, and no third model request that could
        // propose a call the turn would have to refuse.
        Assert.Equal("max_iterations", turn.GetProperty("status").GetString());
        var calls = turn.GetProperty("toolCalls").EnumerateArray().ToList();
        Assert.Equal(2, calls.Count);
        Assert.All(calls, c => Assert.Equal("succeeded", c.GetProperty("status").GetString()));
        Assert.Equal(before + 2, model.Requests.Count);

        // The next turn's history is a valid conversation: every proposed call has its answer.
        model.Reply("Stopped.");
        var next = await (await SendAsync(client, session, "Stop.")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("completed", next.GetProperty("status").GetString());
        Assert.Equal(2, Messages(model.Requests[^1], "tool").Count);
    }

    [Fact]
    public async Task A_session_reads_with_its_conversation_and_the_history_pages_by_seq()
    {
        Model.Call("fs_write", new { path = "a.txt", content = "a" }).Reply("Wrote a.txt.");
        using var client = Member();
        var session = await NewSessionAsync(client);
        await (await SendAsync(client, session, "Write a.txt.")).JsonAsync(HttpStatusCode.OK);

        var read = await (await client.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
        var messages = read.GetProperty("messages").EnumerateArray().ToList();
        Assert.Equal(["user", "assistant", "tool", "assistant"], messages.Select(m => m.GetProperty("role").GetString()));
        Assert.Equal("Write a.txt.", messages[0].GetProperty("content").GetString());
        Assert.Equal("Wrote a.txt.", messages[^1].GetProperty("content").GetString());
        Assert.False(read.TryGetProperty("messagesNext", out _)); // one page holds it all
        Assert.Single(read.GetProperty("toolCalls").EnumerateArray());

        // One page after the first message, and a limit out of range is a 400.
        var firstSeq = messages[0].GetProperty("seq").GetInt64();
        var page = await (await client.GetAsync($"/v1/sessions/{session}/messages?after={firstSeq}&limit=2")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(messages.Skip(1).Take(2).Select(m => m.GetProperty("seq").GetInt64()), page.EnumerateArray().Select(m => m.GetProperty("seq").GetInt64()));
        var invalid = await client.GetAsync($"/v1/sessions/{session}/messages?limit=0");
        Assert.Equal("invalid_limit", (await ProblemDetailsTests.ProblemAsync(invalid, HttpStatusCode.BadRequest)).GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_message_waits_out_a_short_holder_of_the_turn_lock_instead_of_409()
    {
        // Another process's recovery pass holds the session's turn lock for a moment while it looks at the turn that
        // has just ended: the next message of a client that waited for the reply must wait for it, not get 409.
        Model.Reply("First.").Reply("Second.");
        using var client = Member();
        var session = await NewSessionAsync(client);
        await (await SendAsync(client, session, "One.")).JsonAsync(HttpStatusCode.OK);

        await using var probe = new Npgsql.NpgsqlConnection(app.ConnectionString);
        await probe.OpenAsync();
        var (high, low) = TurnLock.Keys(session);
        await using (var take = new Npgsql.NpgsqlCommand("SELECT pg_advisory_lock($1, $2)", probe) { Parameters = { new() { Value = high }, new() { Value = low } } })
        {
            await take.ExecuteNonQueryAsync();
        }

        var sent = SendAsync(client, session, "Two.");
        await Task.Delay(700);
        Assert.False(sent.IsCompleted, "the message did not wait for the lock");
        await using (var release = new Npgsql.NpgsqlCommand("SELECT pg_advisory_unlock($1, $2)", probe) { Parameters = { new() { Value = high }, new() { Value = low } } })
        {
            await release.ExecuteNonQueryAsync();
        }

        var second = await (await sent).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("Second.", second.GetProperty("reply").GetString());
    }

    [Fact]
    public async Task A_rate_limited_model_call_is_retried_and_its_tokens_are_measured()
    {
        var model = Model.Fail(429).Reply("After the retry.", promptTokens: 321, completionTokens: 12);
        var measured = new List<(int Tokens, string? Type)>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "HarnessServer" && instrument.Name == "gen_ai.client.token.usage")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<int>((_, value, tags, _) =>
        {
            var model = tags.ToArray().FirstOrDefault(t => t.Key == "gen_ai.request.model").Value as string;
            var tenant = tags.ToArray().FirstOrDefault(t => t.Key == "harness.tenant").Value as string;
            if (model == "scripted-model" && tenant == Tenant)
            {
                lock (measured)
                {
                    measured.Add((value, tags.ToArray().FirstOrDefault(t => t.Key == "gen_ai.token.type").Value as string));
                }
            }
        });
        listener.Start();
        using var client = Member();
        var session = await NewSessionAsync(client);

        var turn = await (await SendAsync(client, session, "Hi")).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("After the retry.", turn.GetProperty("reply").GetString());
        Assert.Equal(2, model.Requests.Count);
        lock (measured)
        {
            Assert.Contains((321, "input"), measured);
            Assert.Contains((12, "output"), measured);
        }

        var usage = await (await client.GetAsync($"/v1/sessions/{session}/usage")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(321, usage.GetProperty("inputTokens").GetInt32());
        Assert.Equal(12, usage.GetProperty("outputTokens").GetInt32());

        // The tenant's admin sees usage per user and model; other users of the tenant cannot.
        await (await client.GetAsync("/v1/admin/usage")).ProblemAsync(HttpStatusCode.Forbidden);
        using var admin = app.ClientFor("admin", Tenant, roles: [HarnessRoles.Admin]);
        var tenantUsage = await (await admin.GetAsync("/v1/admin/usage")).JsonAsync(HttpStatusCode.OK);
        var lines = tenantUsage.GetProperty("byUser").EnumerateArray().ToList();
        var maria = Assert.Single(lines, l => l.GetProperty("user").GetString() == "maria" && l.GetProperty("model").GetString() == "scripted-model");
        Assert.True(maria.GetProperty("inputTokens").GetInt64() >= 321);
        Assert.Equal(lines.Sum(l => l.GetProperty("inputTokens").GetInt64()), tenantUsage.GetProperty("inputTokens").GetInt64());
        var empty = await (await admin.GetAsync($"/v1/admin/usage?to={Uri.EscapeDataString(DateTimeOffset.UtcNow.AddYears(-1).ToString("O"))}")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(0, empty.GetProperty("calls").GetInt32());
        await (await admin.GetAsync("/v1/admin/usage?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z")).ProblemAsync(HttpStatusCode.BadRequest, "invalid_range");
    }

    [Fact]
    public async Task A_model_endpoint_failure_ends_the_turn_with_a_502_problem_and_the_session_takes_the_next_message()
    {
        // 400 is not retried: the provider refused the request itself (a context too long, a bad parameter).
        Model.Call("fs_write", new { path = "before.txt", content = "ran" }).Fail(400).Reply("Recovered.");
        using var client = Member();
        var session = await NewSessionAsync(client);

        var problem = await (await SendAsync(client, session, "Write and then fail.")).ProblemAsync(HttpStatusCode.BadGateway, "model_failed");

        Assert.Contains("400", problem.GetProperty("detail").GetString());
        var called = Assert.Single(problem.GetProperty("toolCalls").EnumerateArray());
        Assert.Equal("succeeded", called.GetProperty("status").GetString());
        var turn = await (await client.GetAsync(problem.GetProperty("turn").GetString())).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(problem.GetProperty("turnId").GetGuid(), turn.GetProperty("turnId").GetGuid());
        Assert.Equal("failed", turn.GetProperty("status").GetString());
        Assert.Equal("ran", await ReadFileAsync(client, session, "before.txt"));

        var next = await (await SendAsync(client, session, "Try again.")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("Recovered.", next.GetProperty("reply").GetString());
    }

    [Fact]
    public async Task Semantic_Kernels_own_automatic_function_calling_also_runs_every_call_through_the_pipeline()
    {
        // Automatic invocation finds functions in the kernel's plugins, which the model sees as plugin-function.
        var model = Model.Call("harness-fs_write", new { path = "auto.txt", content = "from SK" })
            .Call("harness-shell_exec", new { command = "rm -rf notes" })
            .Reply("Done.");
        using var client = Member();
        var session = await NewSessionAsync(client);
        await using var scope = app.Services.CreateAsyncScope();
        var kernel = scope.ServiceProvider.GetRequiredService<Kernel>();
        new TurnInvocation(new CurrentUser(Tenant, "maria", "maria", ["web"], []), session).AttachTo(kernel);
        var tools = await scope.ServiceProvider.GetRequiredService<ToolRegistry>().ListAsync(Tenant, CancellationToken.None);
        var names = new FunctionNames(tools.Select(t => t.Name));
        kernel.Plugins.AddFromFunctions("harness", tools.Where(t => t.Name is "fs.write" or "shell.exec").Select(t => ToolFunctions.For(t, names)));
        var chat = new OpenAIChatCompletionService("scripted-model",
            new OpenAI.OpenAIClient(new System.ClientModel.ApiKeyCredential("test-key"), new OpenAI.OpenAIClientOptions { Endpoint = new Uri(app.Model.Endpoint) }));
        var history = new ChatHistory("You are a test.");
        history.AddUserMessage("Write a file, then clean up.");

        var answer = await chat.GetChatMessageContentAsync(history, new OpenAIPromptExecutionSettings
        {
            FunctionChoiceBehavior = FunctionChoiceBehavior.Auto(autoInvoke: true),
        }, kernel);

        Assert.Equal("Done.", answer.Content);
        Assert.Equal("from SK", await ReadFileAsync(client, session, "auto.txt"));
        Assert.Contains("\"succeeded\"", ContentOf(Assert.Single(Messages(model.Requests[1], "tool"))));
        var denied = ContentOf(Messages(model.Requests[2], "tool")[1]);
        Assert.Contains("\"denied\"", denied);
        Assert.Contains("no deleting", denied);
    }

    [Fact]
    public async Task A_kernel_refuses_tool_functions_without_a_turn_and_functions_that_are_not_harness_tools()
    {
        using var client = Member();
        var session = await NewSessionAsync(client);
        await using var scope = app.Services.CreateAsyncScope();
        var kernel = scope.ServiceProvider.GetRequiredService<Kernel>();
        var write = ToolFunctions.ForCall("fs.write", "fs_write");
        var arguments = new KernelArguments { ["path"] = "orphan.txt", ["content"] = "x" };

        var noTurn = await Assert.ThrowsAsync<InvalidOperationException>(() => kernel.InvokeAsync(write, arguments));
        Assert.Contains("no turn", noTurn.Message);

        new TurnInvocation(new CurrentUser(Tenant, "maria", "maria", ["web"], []), session).AttachTo(kernel);
        var ran = false;
        var foreign = KernelFunctionFactory.CreateFromMethod(() => ran = true, "sneaky");
        var notOurs = await Assert.ThrowsAsync<InvalidOperationException>(() => kernel.InvokeAsync(foreign));
        Assert.Contains("not a harness tool", notOurs.Message);
        Assert.False(ran);
        Assert.Null(await ReadFileAsync(client, session, "orphan.txt"));

        // With the turn attached, the same invocation is a pipeline call like any other.
        var result = await kernel.InvokeAsync(write, arguments);
        Assert.Equal(ToolCallStatus.Succeeded, PipelineFunctionFilter.ResponseOf(result)!.Status);
        Assert.Equal("succeeded", JsonDocument.Parse(result.GetValue<string>()!).RootElement.GetProperty("status").GetString());
        Assert.Equal("x", await ReadFileAsync(client, session, "orphan.txt"));
    }

    [Fact]
    public async Task Memory_retrieval_is_off_by_default_and_when_an_admin_turns_it_on_turns_get_what_the_user_may_read()
    {
        const string tenant = "agents-recall";
        using var admin = app.ClientFor("root", tenant, roles: [HarnessRoles.Admin]);
        (await admin.PutAsync("/v1/admin/policies/org", new StringContent("""
            default: deny
            rules:
              - tool: "memory.*"
                effect: allow
                args: { namespace: ["user", "team:web", "org"] }
              - tool: "memory.save"
                effect: allow
                args: { namespace: "team:ops" }
            """, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
        using var maria = app.ClientFor("maria", tenant, ["web", "ops"]);
        using var bob = app.ClientFor("bob", tenant, ["web"]);
        async Task SaveAsync(HttpClient client, string ns, string content) =>
            await (await client.PostAsJsonAsync($"/v1/memory/{ns}/items", new { content })).JsonAsync(HttpStatusCode.Created);
        await SaveAsync(maria, "user", "Maria deploys the billing service with blue-green releases.");
        await SaveAsync(bob, "team:web", "The billing service deploy needs the release checklist first.");
        await SaveAsync(bob, "user", "Bob's private note about the billing service deploy.");
        await SaveAsync(maria, "team:ops", "Ops note about the billing service deploy, not readable by policy.");
        using var carol = app.ClientFor("carol", tenant, name: "Carol Org");
        await SaveAsync(carol, "org", "Company-wide: billing service deploys are frozen on the last day of the quarter.");
        var session = await NewSessionAsync(maria);

        var defaults = await (await admin.GetAsync("/v1/admin/agent-settings")).JsonAsync(HttpStatusCode.OK);
        Assert.False(defaults.GetProperty("memoryRetrieval").GetBoolean());
        var model = Model.Reply("Noted.");
        await (await SendAsync(maria, session, "How do I deploy the billing service?")).JsonAsync(HttpStatusCode.OK);
        Assert.DoesNotContain(Messages(model.Requests[0], "user"), m => ContentOf(m).Contains("retrieved from memory"));

        await (await maria.PutAsJsonAsync("/v1/admin/agent-settings", new { memoryRetrieval = true })).ProblemAsync(HttpStatusCode.Forbidden);
        await (await admin.PutAsJsonAsync("/v1/admin/agent-settings", new { memoryItems = 0 })).ProblemAsync(HttpStatusCode.BadRequest, "invalid_settings");
        var changed = await (await admin.PutAsJsonAsync("/v1/admin/agent-settings", new { memoryRetrieval = true })).JsonAsync(HttpStatusCode.OK);
        Assert.True(changed.GetProperty("memoryRetrieval").GetBoolean());
        Assert.Equal(5, changed.GetProperty("memoryItems").GetInt32());

        model = Model.Reply("Use blue-green after the checklist.");
        await (await SendAsync(maria, session, "How do I deploy the billing service?")).JsonAsync(HttpStatusCode.OK);

        var recalled = ContentOf(Messages(model.Requests[0], "user").Last());
        Assert.Contains("retrieved from memory", recalled);
        Assert.Matches(@"\[user, by maria \(maria\), \d{4}-\d{2}-\d{2}\] Maria deploys the billing service", recalled);
        Assert.Matches(@"\[team:web, by bob \(bob\), \d{4}-\d{2}-\d{2}\] The billing service deploy needs the release checklist", recalled);
        Assert.Matches(@"\[org, by Carol Org \(carol\), \d{4}-\d{2}-\d{2}\] Company-wide: billing service deploys are frozen", recalled);
        Assert.DoesNotContain("Bob's private note", recalled);
        Assert.DoesNotContain("Ops note", recalled);
        Assert.DoesNotContain(Messages(model.Requests[0], "system"), m => ContentOf(m).Contains("retrieved from memory"));
        var history = await (await maria.GetAsync($"/v1/sessions/{session}/messages")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("memory", history.EnumerateArray().Last(m => m.GetProperty("role").GetString() != "assistant").GetProperty("role").GetString());

        var audit = await (await admin.GetAsync("/v1/audit/events?type=agent.settings_changed")).JsonAsync(HttpStatusCode.OK);
        var settingsEvent = Assert.Single(audit.GetProperty("events").EnumerateArray(), e => e.GetProperty("type").GetString() == "agent.settings_changed");
        Assert.True(settingsEvent.GetProperty("payload").GetProperty("after").GetProperty("memoryRetrieval").GetBoolean());
        Assert.False(settingsEvent.GetProperty("payload").GetProperty("before").GetProperty("memoryRetrieval").GetBoolean());
    }

    [Fact]
    public async Task Another_users_session_does_not_exist_for_messages()
    {
        using var owner = Member();
        var session = await NewSessionAsync(owner);
        using var other = Member("mallory");

        await (await SendAsync(other, session, "Hi")).ProblemAsync(HttpStatusCode.NotFound, "session_not_found");
        await (await other.GetAsync($"/v1/sessions/{session}/checkpoints")).ProblemAsync(HttpStatusCode.NotFound, "session_not_found");
    }

    private static async Task<JsonElement> EventuallyAsync(HttpClient client, string url, Func<JsonElement, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var current = await (await client.GetAsync(url)).JsonAsync(HttpStatusCode.OK);
            if (done(current))
            {
                return current;
            }

            Assert.True(DateTime.UtcNow < deadline, $"Still not done: {current}");
            await Task.Delay(200);
        }
    }
}

[Collection(AgentCollection.Name)]
public sealed class ModelNotConfiguredTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    [Fact]
    public async Task A_turn_without_a_configured_model_answers_503_with_a_problem()
    {
        using var client = app.ClientFor("maria", "unconfigured");
        var session = (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

        var problem = await (await client.PostAsJsonAsync($"/v1/sessions/{session}/messages", new { content = "Hi" }))
            .ProblemAsync(HttpStatusCode.ServiceUnavailable, "model_not_configured");

        Assert.Contains("Harness:Model:Endpoint", problem.GetProperty("detail").GetString());
    }
}

/// <summary>
/// Keeps the agent classes that start servers sequential: the scripted model's queue is per fixture, and fixtures
/// that migrate fresh databases at the same moment can race creating the cluster-wide harness_app role (23505).
/// </summary>
[CollectionDefinition(Name)]
public sealed class AgentCollection
{
    public const string Name = "agents";
}
