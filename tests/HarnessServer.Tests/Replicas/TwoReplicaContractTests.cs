using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Agents;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Replicas;

/// <summary>
/// The product contract with two replicas over one database, requests alternating between them: each host has its
/// own session lanes, turn locks, approval signal and change-feed listener, as two processes would.
/// </summary>
[Collection(AgentCollection.Name)]
public sealed class TwoReplicaContractTests(TwoReplicaContractTests.TwoReplicas app) : IClassFixture<TwoReplicaContractTests.TwoReplicas>
{
    public const string Tenant = "replicas";

    /// <summary>Replica A (this host) and replica B (<see cref="B"/>), with the scripted model.</summary>
    public sealed class TwoReplicas : HarnessApplication
    {
        public ScriptedModelServer Model { get; private set; } = null!;
        public HarnessApplication B { get; private set; } = null!;

        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["Harness:Model:Endpoint"] = Model.Endpoint;
            settings["Harness:Model:ApiKey"] = "test-key";
            settings["Harness:Model:Id"] = "scripted-model";
            // Long, so a continued turn shows the change feed at work, not a timed pass.
            settings["Harness:Agent:RecoveryInterval"] = "00:05:00";
            settings["Harness:Approvals:PollInterval"] = "00:00:00.200";
        }

        public override async Task InitializeAsync()
        {
            Model = await ScriptedModelServer.StartAsync();
            await base.InitializeAsync();
            B = await StartSiblingAsync();
            using var admin = ClientFor("admin", Tenant, roles: [HarnessRoles.Admin]);
            (await admin.PutAsync("/v1/admin/policies/org", new StringContent("""
                default: deny
                rules:
                  - tool: "fs.*"
                    effect: allow
                  - tool: "fs.write"
                    effect: ask
                    args: { path: "reviewed/**" }
                """, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
        }

        public override async ValueTask DisposeAsync()
        {
            await B.DisposeAsync();
            await base.DisposeAsync();
            await Model.DisposeAsync();
        }
    }

    private HttpClient OnA(string user, string[]? roles = null) => app.ClientFor(user, Tenant, ["web"], roles);
    private HttpClient OnB(string user, string[]? roles = null) => app.B.ClientFor(user, Tenant, ["web"], roles);

    private static async Task<Guid> NewSessionAsync(HttpClient client) =>
        (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

    private static Task<HttpResponseMessage> SendAsync(HttpClient client, Guid session, string content) =>
        client.PostAsJsonAsync($"/v1/sessions/{session}/messages", new { content });

    private static Task<HttpResponseMessage> CallAsync(HttpClient client, Guid session, string tool, object arguments) =>
        client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool, arguments });

    [Fact]
    public async Task Messages_alternating_between_replicas_are_never_refused_as_a_turn_in_progress()
    {
        app.Model.Reset();
        for (var i = 0; i < 6; i++)
        {
            app.Model.Reply($"reply {i}");
        }

        using var a = OnA("rosa");
        using var b = OnB("rosa");
        var session = await NewSessionAsync(a);
        for (var i = 0; i < 6; i++)
        {
            // The client waits for each reply, then sends the next message to the other replica at once.
            var turn = await (await SendAsync(i % 2 == 0 ? a : b, session, $"message {i}")).JsonAsync(HttpStatusCode.OK);
            Assert.Equal($"reply {i}", turn.GetProperty("reply").GetString());
        }

        var history = await (await b.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
        var contents = history.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("content").GetString()).ToList();
        Assert.Equal(Enumerable.Range(0, 6).SelectMany(i => new[] { $"message {i}", $"reply {i}" }), contents);
    }

    [Fact]
    public async Task An_approval_decided_on_one_replica_continues_the_turn_held_on_the_other_and_runs_the_call_once()
    {
        app.Model.Reset();
        app.Model.Call("fs_write", new { path = "reviewed/plan.md", content = "the plan" }).Reply("The plan is written.");
        using var a = OnA("ines");
        var session = await NewSessionAsync(a);
        var waiting = await (await SendAsync(a, session, "Write the plan.")).JsonAsync(HttpStatusCode.Accepted);
        var pending = Assert.Single(waiting.GetProperty("toolCalls").EnumerateArray());
        var callId = pending.GetProperty("id").GetGuid();

        using var approver = OnB("olga", [HarnessRoles.Approver]);
        await (await approver.PostAsJsonAsync($"/v1/approvals/{pending.GetProperty("approvalId").GetGuid()}/decision", new { approve = true, comment = "ok" }))
            .JsonAsync(HttpStatusCode.OK);

        var turnUrl = $"/v1/sessions/{session}/turns/{waiting.GetProperty("turnId").GetGuid()}";
        JsonElement turn;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        do
        {
            turn = await (await a.GetAsync(turnUrl)).JsonAsync(HttpStatusCode.OK);
            if (turn.GetProperty("status").GetString() == "completed")
            {
                break;
            }

            await Task.Delay(100);
        }
        while (DateTime.UtcNow < deadline);

        Assert.Equal("completed", turn.GetProperty("status").GetString());
        Assert.Equal("The plan is written.", turn.GetProperty("reply").GetString());
        Assert.Equal("succeeded", Assert.Single(turn.GetProperty("toolCalls").EnumerateArray()).GetProperty("status").GetString());
        var read = await (await CallAsync(a, session, "fs.read", new { path = "reviewed/plan.md" })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("the plan", read.GetProperty("result").GetProperty("content").GetString());
        Assert.Equal(1, await app.CountAsync("SELECT count(*) FROM audit_events WHERE type = 'tool_call.executed' AND payload->>'callId' = $1", callId.ToString()));
    }

    [Fact]
    public async Task A_pause_on_one_replica_is_honoured_by_the_other_and_a_resume_there_by_the_first()
    {
        using var a = OnA("paul");
        using var b = OnB("paul");
        var session = await NewSessionAsync(a);
        (await a.PostAsync($"/v1/sessions/{session}/pause", null)).EnsureSuccessStatusCode();

        await (await CallAsync(b, session, "fs.write", new { path = "notes.txt", content = "x" })).ProblemAsync(HttpStatusCode.Conflict, "session_paused");
        Assert.Equal(0, await app.CountAsync("SELECT count(*) FROM tool_calls WHERE session_id = $1", session));

        (await b.PostAsync($"/v1/sessions/{session}/resume", null)).EnsureSuccessStatusCode();
        var written = await (await CallAsync(a, session, "fs.write", new { path = "notes.txt", content = "x" })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("succeeded", written.GetProperty("status").GetString());
    }

    [Fact]
    public async Task The_event_stream_on_one_replica_carries_the_calls_made_on_the_other()
    {
        using var a = OnA("sven");
        using var b = OnB("sven");
        var session = await NewSessionAsync(a);
        var before = await (await CallAsync(a, session, "fs.write", new { path = "before.txt", content = "0" })).JsonAsync(HttpStatusCode.OK);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var stream = await a.GetAsync($"/v1/sessions/{session}/events", HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync(timeout.Token));
        // The history comes first, so the subscription is in place: what follows is live, made on the other replica.
        Assert.Equal(before.GetProperty("id").GetGuid(), (await NextEventAsync(reader, timeout.Token)).GetProperty("id").GetGuid());

        var written = await (await CallAsync(b, session, "fs.write", new { path = "seen.txt", content = "1" })).JsonAsync(HttpStatusCode.OK);
        var held = await (await CallAsync(b, session, "fs.write", new { path = "reviewed/held.txt", content = "2" })).JsonAsync(HttpStatusCode.Accepted);

        var seen = new Dictionary<Guid, string?>();
        while (seen.GetValueOrDefault(written.GetProperty("id").GetGuid()) != "succeeded"
               || seen.GetValueOrDefault(held.GetProperty("id").GetGuid()) != "pending_approval")
        {
            var change = await NextEventAsync(reader, timeout.Token);
            seen[change.GetProperty("id").GetGuid()] = change.GetProperty("status").GetString();
        }

        Assert.Equal("succeeded", seen[written.GetProperty("id").GetGuid()]);
    }

    private static async Task<JsonElement> NextEventAsync(StreamReader reader, CancellationToken cancellationToken)
    {
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                return JsonDocument.Parse(line["data: ".Length..]).RootElement.Clone();
            }
        }

        throw new EndOfStreamException("The event stream ended.");
    }
}
