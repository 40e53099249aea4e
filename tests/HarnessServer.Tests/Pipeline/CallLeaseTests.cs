using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using HarnessServer.Identity;
using HarnessServer.Pipeline;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Pipeline;

/// <summary>
/// A session's calls run under a database execution lease with a fencing token: a replica SIGKILLed mid-call loses
/// it when it runs out and another replica records the call interrupted exactly once; a holder cut off from its lock
/// whose lease ran out finds its finishing write refused; a lease another replica still holds makes a call wait.
/// </summary>
public sealed class CallLeaseTests(CallLeaseTests.LeaseApplication app) : IClassFixture<CallLeaseTests.LeaseApplication>
{
    public const string Tenant = "lease";

    public sealed class LeaseApplication : HarnessApplication
    {
        protected override void Configure(IDictionary<string, string?> settings)
        {
            // This host is the replica that survives: it sweeps often. Its own leases last long enough that only the
            // test ends them early.
            settings["Harness:Recovery:SweepInterval"] = "00:00:00.250";
            settings["Harness:Recovery:LeaseDuration"] = "00:00:30";
            settings["Harness:Recovery:LeaseRetryInterval"] = "00:00:00.100";
        }

        public override async Task InitializeAsync()
        {
            await base.InitializeAsync();
            using var admin = ClientFor("admin", Tenant, roles: [HarnessRoles.Admin]);
            (await admin.PutAsync("/v1/admin/policies/org", new StringContent("""
                default: deny
                rules:
                  - tool: "fs.*"
                    effect: allow
                  - tool: "held.job"
                    effect: allow
                """, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
            // Marks that it ran, then waits for a file the test writes (or for its process to die).
            (await admin.PostAsJsonAsync("/v1/admin/tools", new
            {
                name = "held.job",
                description = "Appends a line to runs.txt, then waits for the file 'go'.",
                kind = "command",
                argv = new[] { "sh", "-c", "echo run >> runs.txt; while [ ! -e go ]; do sleep 0.05; done" },
                schema = new { type = "object", properties = new { } },
            })).EnsureSuccessStatusCode();
        }

        public string WorkspaceFile(Guid session, string name) => Path.Combine(DataRoot, "workspaces", Tenant, session.ToString(), name);
    }

    private static async Task<Guid> NewSessionAsync(HttpClient client) =>
        (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"Timed out waiting for {what}.");
            await Task.Delay(50);
        }
    }

    private Task<long> EventsAsync(string type, Guid call) =>
        app.CountAsync("SELECT count(*) FROM audit_events WHERE type = $1 AND payload->>'callId' = $2", type, call.ToString());

    private async Task AssertChainValidAsync()
    {
        using var auditor = app.ClientFor("auditor", Tenant, roles: [HarnessRoles.Auditor]);
        var verify = await (await auditor.GetAsync("/v1/audit/verify")).JsonAsync(HttpStatusCode.OK);
        Assert.True(verify.GetProperty("valid").GetBoolean(), verify.ToString());
    }

    [Fact]
    public async Task A_replica_killed_mid_call_loses_its_lease_when_it_runs_out_and_the_call_is_recorded_interrupted_once_by_another()
    {
        var token = app.Issuer.CreateToken("kim", Tenant, ["web"]);
        Guid session;
        Guid call;
        long killedToken;
        DateTime leaseEnd;
        await using (var doomed = await ServerProcess.StartAsync(app, new Dictionary<string, string>
        {
            ["Harness__Recovery__LeaseDuration"] = "00:00:02",
            ["Harness__Recovery__SweepInterval"] = "01:00:00",
        }))
        {
            using var client = doomed.Client(token);
            session = await NewSessionAsync(client);
            var running = client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "held.job", arguments = new { } });
            await WaitUntilAsync(() => Task.FromResult(File.Exists(app.WorkspaceFile(session, "runs.txt"))), "the job to start on the doomed replica");
            await WaitUntilAsync(async () => await app.CountAsync("SELECT count(*) FROM tool_calls WHERE session_id = $1 AND lease_token IS NOT NULL", session) == 1,
                "the call to be stamped with its lease");

            Assert.Contains($"/{doomed.ProcessId}/", await app.ScalarAsSuperuserAsync<string>("SELECT holder FROM call_leases WHERE scope_id = $1", session));
            doomed.Kill();
            await Assert.ThrowsAnyAsync<Exception>(() => running);
            call = await app.ScalarAsSuperuserAsync<Guid>("SELECT id FROM tool_calls WHERE session_id = $1", session);
            killedToken = await app.ScalarAsSuperuserAsync<long>("SELECT lease_token FROM tool_calls WHERE id = $1", call);
            leaseEnd = await app.ScalarAsSuperuserAsync<DateTime>("SELECT expires_at FROM call_leases WHERE scope_id = $1", session);
        }

        using var survivor = app.ClientWithToken(token);
        Assert.Equal("interrupted", await survivor.WaitForCallStatusAsync(session, call, "interrupted"));

        // Not before the dead replica's lease ran out (its lock went with its connection at once), and exactly once.
        var recordedAt = await app.ScalarAsSuperuserAsync<DateTime>("SELECT completed_at FROM tool_calls WHERE id = $1", call);
        Assert.True(recordedAt >= leaseEnd, $"Recorded interrupted at {recordedAt:O}, before the lease ran out at {leaseEnd:O}.");
        Assert.Equal(1, await EventsAsync("tool_call.interrupted", call));
        Assert.Equal(0, await EventsAsync("tool_call.executed", call));
        Assert.Equal(["run"], await File.ReadAllLinesAsync(app.WorkspaceFile(session, "runs.txt")));
        await AssertChainValidAsync();

        // The session goes on here under a newer token; the killed call is never run again.
        File.WriteAllText(app.WorkspaceFile(session, "go"), "");
        var next = await (await survivor.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "held.job", arguments = new { } })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("succeeded", next.GetProperty("status").GetString());
        var nextToken = await app.ScalarAsSuperuserAsync<long>("SELECT lease_token FROM tool_calls WHERE id = $1", next.GetProperty("id").GetGuid());
        Assert.True(nextToken > killedToken, $"The next holding's token {nextToken} is not above the killed one's {killedToken}.");
        Assert.Equal(["run", "run"], await File.ReadAllLinesAsync(app.WorkspaceFile(session, "runs.txt")));
        Assert.Equal("interrupted", await survivor.WaitForCallStatusAsync(session, call, "interrupted"));
        Assert.Equal(1, await EventsAsync("tool_call.interrupted", call));
    }

    [Fact]
    public async Task A_holder_whose_lock_and_lease_were_lost_cannot_record_the_call_another_replica_recorded()
    {
        using var client = app.ClientFor("fenced", Tenant, ["web"]);
        var session = await NewSessionAsync(client);
        var running = client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "held.job", arguments = new { } });
        await WaitUntilAsync(() => Task.FromResult(File.Exists(app.WorkspaceFile(session, "runs.txt"))), "the job to start");
        await WaitUntilAsync(async () => await app.CountAsync("SELECT count(*) FROM tool_calls WHERE session_id = $1 AND lease_token IS NOT NULL", session) == 1,
            "the call to be stamped with its lease");
        var call = await app.ScalarAsSuperuserAsync<Guid>("SELECT id FROM tool_calls WHERE session_id = $1", session);

        // What a primary switch or a partition does to the holder: its lock's connection is gone, and its lease runs
        // out before it renews it. The holder itself lives on and its job is still running.
        var key = SessionGate.LockKey(session);
        Assert.Equal(1, await app.CountAsync("""
            SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_locks
                                  WHERE locktype = 'advisory' AND classid::bigint = $1 AND objid::bigint = $2 AND granted) t
            """, (key >> 32) & 0xffffffffL, key & 0xffffffffL));
        await app.ExecuteAsSuperuserAsync("UPDATE call_leases SET expires_at = now() - interval '1 second' WHERE scope_id = $1", session);
        Assert.Equal("interrupted", await client.WaitForCallStatusAsync(session, call, "interrupted"));

        // The job finishes; its finishing write names a token the call no longer runs under, so nothing is written.
        File.WriteAllText(app.WorkspaceFile(session, "go"), "");
        var response = await (await running).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("interrupted", response.GetProperty("status").GetString());
        Assert.Equal("lease_lost", response.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal("Interrupted", await app.ScalarAsSuperuserAsync<string>("SELECT status FROM tool_calls WHERE id = $1", call));
        Assert.Equal(1, await EventsAsync("tool_call.interrupted", call));
        Assert.Equal(0, await EventsAsync("tool_call.executed", call));
        Assert.Equal(["run"], await File.ReadAllLinesAsync(app.WorkspaceFile(session, "runs.txt")));
        await AssertChainValidAsync();
    }

    [Fact]
    public async Task A_call_waits_while_another_replica_holds_the_sessions_lease_and_runs_once_it_runs_out()
    {
        using var client = app.ClientFor("waiter", Tenant, ["web"]);
        var session = await NewSessionAsync(client);
        File.WriteAllText(app.WorkspaceFile(session, "go"), "");
        // A lease left by a replica that still holds it although nobody holds the session's lock (the lock was
        // forgotten by a primary switch).
        await app.ExecuteAsSuperuserAsync("""
            INSERT INTO call_leases (tenant_id, scope_id, call_id, holder, token, expires_at)
            VALUES ($1, $2, gen_random_uuid(), 'other-replica/1/x', 7, now() + interval '1500 milliseconds')
            """, Tenant, session);

        var watch = Stopwatch.StartNew();
        var call = await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "held.job", arguments = new { } })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("succeeded", call.GetProperty("status").GetString());
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(1000), $"The call ran after {watch.Elapsed} while another replica held the lease.");
        Assert.Equal(8, await app.ScalarAsSuperuserAsync<long>("SELECT lease_token FROM tool_calls WHERE id = $1", call.GetProperty("id").GetGuid()));
        Assert.Null(await app.ScalarAsSuperuserAsync<object>("SELECT call_id FROM call_leases WHERE scope_id = $1 AND call_id IS NOT NULL", session));
    }
}
