using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Sessions;
using HarnessServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace HarnessServer.Tests.Pipeline;

/// <summary>Fail-closed audit, restarts, two server processes and the live event stream.</summary>
public sealed class PipelineDurabilityTests(ToolCallPipelineTests.PipelineApplication app) : IClassFixture<ToolCallPipelineTests.PipelineApplication>
{
    private static async Task<Guid> NewSessionAsync(HttpClient client) =>
        (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

    private static Task<HttpResponseMessage> CallAsync(HttpClient client, Guid session, string tool, object arguments) =>
        client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool, arguments });

    [Fact]
    public async Task When_the_audit_event_cannot_be_written_the_call_answers_503_and_nothing_runs()
    {
        const string tenant = "closed";
        using var admin = app.ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
        (await admin.PutAsync("/v1/admin/policies/org", new StringContent("rules:\n  - tool: 'fs.*'\n    effect: allow\n", Encoding.UTF8, "application/yaml")))
            .EnsureSuccessStatusCode();
        var session = await NewSessionAsync(admin);
        await app.ExecuteAsSuperuserAsync("""
            CREATE FUNCTION refuse_closed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.tenant_id = 'closed' AND NEW.type = 'tool_call.decided' THEN RAISE EXCEPTION 'audit store refuses'; END IF; RETURN NEW; END $$;
            CREATE TRIGGER refuse_closed BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_closed();
            """);
        try
        {
            await (await CallAsync(admin, session, "fs.write", new { path = "never.txt", content = "x" }))
                .ProblemAsync(HttpStatusCode.ServiceUnavailable, "audit_unavailable");
        }
        finally
        {
            await app.ExecuteAsSuperuserAsync("DROP TRIGGER refuse_closed ON audit_events; DROP FUNCTION refuse_closed();");
        }

        var read = await (await CallAsync(admin, session, "fs.read", new { path = "never.txt" })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("not_found", read.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(0, await app.CountAsync($"SELECT count(*) FROM tool_calls WHERE session_id = '{session}' AND tool = 'fs.write'"));
    }

    [Fact]
    public async Task Approval_decided_on_another_server_process_runs_the_call_exactly_once()
    {
        using var requester = app.ClientFor("paula", ToolCallPipelineTests.Tenant, ["web"]);
        var session = await NewSessionAsync(requester);
        var pending = await (await CallAsync(requester, session, "fs.write", new { path = "reviewed/once.txt", content = "1" })).JsonAsync(HttpStatusCode.Accepted);
        var callId = pending.GetProperty("id").GetGuid();

        // A second server over the same database (a restarted or scaled-out process); both run approval executors.
        await using var second = await app.StartSiblingAsync();
        using var approver = second.ClientFor("victor", ToolCallPipelineTests.Tenant, ["web"], [HarnessRoles.Approver]);
        (await approver.PostAsJsonAsync($"/v1/approvals/{pending.GetProperty("approvalId").GetGuid()}/decision", new { approve = true })).EnsureSuccessStatusCode();

        Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(session, callId, "succeeded"));
        await Task.Delay(500); // give a duplicate run, if there were one, time to land
        Assert.Equal(1, await app.CountAsync($"SELECT count(*) FROM audit_events WHERE type = 'tool_call.executed' AND payload::jsonb->>'callId' = '{callId}'"));
    }

    [Fact]
    public async Task A_call_approved_while_its_session_is_paused_runs_only_after_the_session_is_resumed()
    {
        using var requester = app.ClientFor("pia", ToolCallPipelineTests.Tenant, ["web"]);
        var session = await NewSessionAsync(requester);
        var pending = await (await CallAsync(requester, session, "fs.write", new { path = "reviewed/paused.txt", content = "later" })).JsonAsync(HttpStatusCode.Accepted);
        var callId = pending.GetProperty("id").GetGuid();
        (await requester.PostAsync($"/v1/sessions/{session}/pause", null)).EnsureSuccessStatusCode();

        using var approver = app.ClientFor("victor", ToolCallPipelineTests.Tenant, ["web"], [HarnessRoles.Approver]);
        (await approver.PostAsJsonAsync($"/v1/approvals/{pending.GetProperty("approvalId").GetGuid()}/decision", new { approve = true })).EnsureSuccessStatusCode();
        await Task.Delay(1000); // five executor polls

        var view = await (await requester.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("approved", view.GetProperty("toolCalls").EnumerateArray().Single(c => c.GetProperty("id").GetGuid() == callId).GetProperty("status").GetString());
        Assert.Equal(0, await app.CountAsync($"SELECT count(*) FROM audit_events WHERE type = 'tool_call.executed' AND payload::jsonb->>'callId' = '{callId}'"));

        (await requester.PostAsync($"/v1/sessions/{session}/resume", null)).EnsureSuccessStatusCode();

        Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(session, callId, "succeeded", "failed"));
        var read = await (await CallAsync(requester, session, "fs.read", new { path = "reviewed/paused.txt" })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("later", read.GetProperty("result").GetProperty("content").GetString());
    }

    [Fact]
    public async Task An_approved_call_whose_tool_was_redefined_since_the_request_does_not_run()
    {
        const string tenant = "redefine";
        using var admin = app.ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
        (await admin.PutAsync("/v1/admin/policies/org", new StringContent("rules:\n  - tool: greet\n    effect: ask\n", Encoding.UTF8, "application/yaml")))
            .EnsureSuccessStatusCode();
        object Greet(string description, params string[] argv) => new
        {
            name = "greet",
            description,
            kind = "command",
            argv,
            schema = new { type = "object", required = new[] { "who" }, properties = new { who = new { type = "string", pattern = "^[a-z]+$" } } },
        };
        (await admin.PostAsJsonAsync("/v1/admin/tools", Greet("Greets", "echo", "hello", "{who}"))).EnsureSuccessStatusCode();
        using var requester = app.ClientFor("rita", tenant, ["ops"]);
        using var approver = app.ClientFor("ann", tenant, ["ops"], [HarnessRoles.Approver]);
        var session = await NewSessionAsync(requester);
        async Task<string?> ApproveAsync(JsonElement pending, params string[] statuses)
        {
            (await approver.PostAsJsonAsync($"/v1/approvals/{pending.GetProperty("approvalId").GetGuid()}/decision", new { approve = true })).EnsureSuccessStatusCode();
            return await requester.WaitForCallStatusAsync(session, pending.GetProperty("id").GetGuid(), statuses);
        }

        var first = await (await CallAsync(requester, session, "greet", new { who = "world" })).JsonAsync(HttpStatusCode.Accepted);
        (await admin.PutAsJsonAsync("/v1/admin/tools/greet", Greet("Greets", "echo", "changed", "{who}"))).EnsureSuccessStatusCode();

        Assert.Equal("rejected", await ApproveAsync(first, "rejected", "succeeded", "failed"));
        var view = await (await requester.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
        var refused = view.GetProperty("toolCalls").EnumerateArray().Single(c => c.GetProperty("id").GetGuid() == first.GetProperty("id").GetGuid());
        Assert.Equal("tool_changed", refused.GetProperty("error").GetProperty("code").GetString());
        Assert.False(refused.TryGetProperty("result", out var result) && result.ValueKind != JsonValueKind.Null);

        // A new description (or the enabled flag) is not a new definition: the approved call runs.
        var second = await (await CallAsync(requester, session, "greet", new { who = "again" })).JsonAsync(HttpStatusCode.Accepted);
        (await admin.PutAsJsonAsync("/v1/admin/tools/greet", Greet("Greets politely", "echo", "changed", "{who}"))).EnsureSuccessStatusCode();

        Assert.Equal("succeeded", await ApproveAsync(second, "succeeded", "rejected", "failed"));
        view = await (await requester.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
        var ran = view.GetProperty("toolCalls").EnumerateArray().Single(c => c.GetProperty("id").GetGuid() == second.GetProperty("id").GetGuid());
        Assert.Equal("changed again\n", ran.GetProperty("result").GetProperty("stdout").GetString());
    }

    [Fact]
    public async Task An_approved_call_is_decided_again_and_a_deny_added_since_the_request_wins()
    {
        const string tenant = "redecide";
        using var admin = app.ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
        var yaml = new StringContent("rules:\n  - tool: 'fs.*'\n    effect: allow\n  - tool: fs.write\n    effect: ask\n", Encoding.UTF8, "application/yaml");
        (await admin.PutAsync("/v1/admin/policies/org", yaml)).EnsureSuccessStatusCode();
        using var requester = app.ClientFor("rob", tenant, ["ops"]);
        var session = await NewSessionAsync(requester);
        var pending = await (await CallAsync(requester, session, "fs.write", new { path = "late.txt", content = "x" })).JsonAsync(HttpStatusCode.Accepted);

        (await admin.PutAsync("/v1/admin/policies/teams/ops", new StringContent("rules:\n  - tool: fs.write\n    effect: deny\n", Encoding.UTF8, "application/yaml")))
            .EnsureSuccessStatusCode();
        using var approver = app.ClientFor("ann", tenant, ["ops"], [HarnessRoles.Approver]);
        (await approver.PostAsJsonAsync($"/v1/approvals/{pending.GetProperty("approvalId").GetGuid()}/decision", new { approve = true })).EnsureSuccessStatusCode();

        Assert.Equal("denied", await requester.WaitForCallStatusAsync(session, pending.GetProperty("id").GetGuid(), "denied", "succeeded"));
        var read = await (await CallAsync(requester, session, "fs.read", new { path = "late.txt" })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("not_found", read.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_call_left_running_by_a_dead_process_is_recorded_interrupted_at_start_and_not_rerun()
    {
        using var client = app.ClientFor("ivan", ToolCallPipelineTests.Tenant, ["web"]);
        var session = await NewSessionAsync(client);
        var call = await (await CallAsync(client, session, "fs.write", new { path = "crash.txt", content = "once" })).JsonAsync(HttpStatusCode.OK);
        var callId = call.GetProperty("id").GetGuid();
        // As if the process had died between starting and recording the call.
        await app.ExecuteAsSuperuserAsync($"UPDATE tool_calls SET status = 'Running', completed_at = NULL WHERE id = '{callId}'");

        await using var restarted = await app.StartSiblingAsync();

        var view = await (await client.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("interrupted", view.GetProperty("toolCalls").EnumerateArray().Single(c => c.GetProperty("id").GetGuid() == callId).GetProperty("status").GetString());
        Assert.Equal(1, await app.CountAsync($"SELECT count(*) FROM audit_events WHERE type = 'tool_call.interrupted' AND payload::jsonb->>'callId' = '{callId}'"));
    }

    [Fact]
    public async Task An_approved_call_claimed_by_a_process_that_has_not_locked_it_yet_is_interrupted_once_and_never_runs()
    {
        using var requester = app.ClientFor("gus", ToolCallPipelineTests.Tenant, ["web"]);
        var session = await NewSessionAsync(requester);
        var pending = await (await CallAsync(requester, session, "fs.write", new { path = "reviewed/gap.txt", content = "x" })).JsonAsync(HttpStatusCode.Accepted);
        var callId = pending.GetProperty("id").GetGuid();
        // Claimed (stamped executed) by a process that is between its claim and taking the session's lock.
        await app.ExecuteAsSuperuserAsync($"""
            UPDATE approvals SET status = 'Approved', decided_by = 'victor', decided_at = now(), executed_at = now()
            WHERE id = '{pending.GetProperty("approvalId").GetGuid()}';
            UPDATE tool_calls SET status = 'Approved' WHERE id = '{callId}';
            """);

        // Another process starts meanwhile: nobody holds the lock, so the claim looks dead and is recorded interrupted.
        await using (await app.StartSiblingAsync())
        {
        }

        Assert.Equal("interrupted", await requester.WaitForCallStatusAsync(session, callId, "interrupted"));

        // The claiming process now takes the lock and goes on: it finds the call interrupted and does not run it.
        await using var scope = app.Services.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<HarnessServer.Tenancy.TenantContext>().Set(ToolCallPipelineTests.Tenant);
        var call = await scope.ServiceProvider.GetRequiredService<HarnessServer.Data.HarnessDbContext>().ToolCalls.AsNoTracking().FirstAsync(c => c.Id == callId);
        var caller = new HarnessServer.Identity.CurrentUser(ToolCallPipelineTests.Tenant, "gus", "gus", ["web"], []);
        var response = await scope.ServiceProvider.GetRequiredService<HarnessServer.Pipeline.ToolCallPipeline>()
            .RunApprovedAsync(new HarnessServer.Pipeline.ToolCallRequest(caller, session, call.Tool, call.Arguments.RootElement.Clone()), call, default);

        Assert.Equal(HarnessServer.Sessions.ToolCallStatus.Interrupted, response.Status);
        var read = await (await CallAsync(requester, session, "fs.read", new { path = "reviewed/gap.txt" })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("not_found", read.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(0, await app.CountAsync($"SELECT count(*) FROM audit_events WHERE type = 'tool_call.executed' AND payload::jsonb->>'callId' = '{callId}'"));
        Assert.Equal(1, await app.CountAsync($"SELECT count(*) FROM audit_events WHERE type = 'tool_call.interrupted' AND payload::jsonb->>'callId' = '{callId}'"));
    }

    [Fact]
    public async Task Session_events_stream_history_then_live_status_changes()
    {
        using var client = app.ClientFor("sofia", ToolCallPipelineTests.Tenant, ["web"]);
        var session = await NewSessionAsync(client);
        await CallAsync(client, session, "fs.write", new { path = "first.txt", content = "1" });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        using var stream = await client.GetAsync($"/v1/sessions/{session}/events", HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        Assert.Equal("text/event-stream", stream.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync(timeout.Token));
        var first = await NextEventAsync(reader, timeout.Token);
        await CallAsync(client, session, "fs.read", new { path = "first.txt" });
        var second = await NextEventAsync(reader, timeout.Token);

        Assert.Equal(("fs.write", "succeeded"), (first.GetProperty("tool").GetString(), first.GetProperty("status").GetString()));
        Assert.Equal("fs.read", second.GetProperty("tool").GetString());
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
