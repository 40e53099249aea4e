using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Data;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;
using Npgsql;

namespace HarnessServer.Tests.Data;

/// <summary>
/// The server on a real Patroni pair (scripts/patroni-cluster.sh) through a multi-host connection string, with the
/// primary killed (SIGKILL of its Patroni and PostgreSQL) under a load of tool calls from several clients.
/// </summary>
public sealed class DatabaseFailoverTests(DatabaseFailoverTests.FailoverApplication app, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<DatabaseFailoverTests.FailoverApplication>
{
    private static readonly string[] Tenants = ["failover-a", "failover-b"];

    /// <summary>How long after the kill the first call must succeed again: Patroni's ttl (10 s) plus its loop, with room for a loaded machine.</summary>
    private static readonly TimeSpan ResumeWithin = TimeSpan.FromSeconds(40);

    public sealed class FailoverApplication : HarnessApplication
    {
        public PatroniCluster? Patroni { get; private set; }

        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["ConnectionStrings:Harness"] = Patroni!.ApplicationConnectionString;
            settings["ConnectionStrings:HarnessMigrations"] = Patroni.SuperuserConnectionString;
        }

        public override async Task InitializeAsync()
        {
            if (PatroniCluster.Missing() is not null)
            {
                return; // the fact is skipped and says why
            }

            Patroni = await PatroniCluster.StartAsync();
            await base.InitializeAsync();
            foreach (var tenant in Tenants)
            {
                using var admin = ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
                (await admin.PutAsync("/v1/admin/policies/org", new StringContent(
                    "rules:\n  - tool: 'fs.*'\n    effect: allow\n", Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
            }
        }

        public override async ValueTask DisposeAsync()
        {
            await base.DisposeAsync();
            if (Patroni is not null)
            {
                await Patroni.DisposeAsync();
                Patroni = null;
            }
        }
    }

    private sealed record Outcome(TimeSpan At, string Tenant, int Status, string? RetryAfter, string? Code, Guid? CallId, string Body);

    [PatroniFact]
    public async Task A_killed_primary_costs_503s_with_Retry_After_for_seconds_never_a_500_and_no_acknowledged_audit_event()
    {
        var patroni = app.Patroni!;
        var clock = Stopwatch.StartNew();
        var outcomes = new ConcurrentQueue<Outcome>();
        using var stop = new CancellationTokenSource();

        // Four clients in two tenants, each in a session of its own, writing files as fast as the server answers.
        var clients = Enumerable.Range(0, 4).Select(i => (Tenant: Tenants[i % 2], Client: app.ClientFor($"writer{i}", Tenants[i % 2]))).ToList();
        var sessions = new List<Guid>();
        foreach (var (_, client) in clients)
        {
            sessions.Add((await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid());
        }

        var load = clients.Select((c, i) => Task.Run(async () =>
        {
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                using var response = await c.Client.PostAsJsonAsync($"/v1/sessions/{sessions[i]}/tool-calls",
                    new { tool = "fs.write", arguments = new { path = $"load/{n}.txt", content = $"{i}:{n}" } });
                var body = await response.Content.ReadAsStringAsync();
                string? code = null;
                Guid? callId = null;
                if (body.StartsWith('{'))
                {
                    var json = JsonDocument.Parse(body).RootElement;
                    code = json.TryGetProperty("code", out var c1) ? c1.GetString() : null;
                    callId = response.StatusCode == HttpStatusCode.OK && json.TryGetProperty("id", out var id) ? id.GetGuid() : null;
                }

                outcomes.Enqueue(new Outcome(clock.Elapsed, c.Tenant, (int)response.StatusCode,
                    response.Headers.RetryAfter?.Delta?.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture), code, callId, body));
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    await Task.Delay(100); // a client that honours Retry-After more eagerly than it says
                }
            }
        })).ToList();

        // Load on the first primary, then the kill mid-load.
        await WaitUntilAsync(() => outcomes.Count(o => o.Status == 200) >= 40, TimeSpan.FromSeconds(60), "40 calls before the kill");
        var killedAt = clock.Elapsed;
        var newLeader = await patroni.KillPrimaryAsync();
        var promotedAt = clock.Elapsed;

        // Service resumes: calls succeed again, then the load keeps running on the new primary for a while.
        await WaitUntilAsync(() => outcomes.Any(o => o.At > promotedAt && o.Status == 200), ResumeWithin, "a successful call after the promotion");
        var resumedAt = outcomes.Where(o => o.At > killedAt).SkipWhile(o => o.Status != 200 || o.At < promotedAt).First().At;
        await WaitUntilAsync(() => outcomes.Count(o => o.At > resumedAt && o.Status == 200) >= 40, TimeSpan.FromSeconds(60), "40 calls after the switch");
        await stop.CancelAsync();
        await Task.WhenAll(load);

        var all = outcomes.ToList();
        var summary = $"new leader {newLeader}; kill at {killedAt.TotalSeconds:F1} s, promoted at {promotedAt.TotalSeconds:F1} s, resumed at {resumedAt.TotalSeconds:F1} s; " +
            string.Join(", ", all.GroupBy(o => o.Status).Select(g => $"{g.Key}: {g.Count()}"));

        output.WriteLine(summary);

        // Only 200 and 503 (a problem with its dedicated code and Retry-After); never a 500 or another status.
        var unexpected = all.Where(o => o.Status is not (200 or 503)).ToList();
        Assert.True(unexpected.Count == 0, $"{summary}. Unexpected: {string.Join(" | ", unexpected.Take(5).Select(o => $"{o.Status} {o.Body}"))}");
        var unavailable = all.Where(o => o.Status == 503).ToList();
        Assert.True(unavailable.Count > 0, $"{summary}: the switch was never seen by a client");
        Assert.All(unavailable, o =>
        {
            Assert.Equal("2", o.RetryAfter);
            Assert.Contains(o.Code, (string[])["database_unavailable", "audit_unavailable"]);
        });
        Assert.True(resumedAt - killedAt < ResumeWithin, summary);
        Assert.True(app.Service<DatabaseFailover>().Clears > 0, $"{summary}: the pools were never cleared");

        // Every acknowledged call is in its tenant's chain after the failover, executed exactly once, and no call is
        // recorded twice; the chain verifies with no gap.
        var acknowledged = all.Where(o => o.CallId is not null).ToList();
        await using var database = NpgsqlDataSource.Create(patroni.SuperuserConnectionString);
        foreach (var tenant in Tenants)
        {
            var executed = new Dictionary<Guid, long>();
            await using (var command = database.CreateCommand(
                "SELECT (payload::jsonb->>'callId')::uuid, count(*) FROM audit_events WHERE tenant_id = $1 AND type = 'tool_call.executed' GROUP BY 1"))
            {
                command.Parameters.Add(new NpgsqlParameter { Value = tenant });
                await using var reader = await command.ExecuteReaderAsync();
                while (await reader.ReadAsync())
                {
                    executed[reader.GetGuid(0)] = reader.GetInt64(1);
                }
            }

            var missing = acknowledged.Where(o => o.Tenant == tenant && !executed.ContainsKey(o.CallId!.Value)).ToList();
            Assert.True(missing.Count == 0, $"{summary}: {missing.Count} acknowledged calls of {tenant} have no executed event, e.g. {missing.FirstOrDefault()?.CallId}");
            Assert.All(executed, e => Assert.Equal(1, e.Value));

            await using (var gaps = database.CreateCommand("SELECT count(*), coalesce(max(seq), 0) FROM audit_events WHERE tenant_id = $1"))
            {
                gaps.Parameters.Add(new NpgsqlParameter { Value = tenant });
                await using var reader = await gaps.ExecuteReaderAsync();
                await reader.ReadAsync();
                Assert.Equal(reader.GetInt64(1), reader.GetInt64(0));
            }

            using var auditor = app.ClientFor("auditor", tenant, roles: [HarnessRoles.Auditor]);
            var verify = await (await auditor.GetAsync("/v1/audit/verify")).JsonAsync(HttpStatusCode.OK);
            Assert.True(verify.GetProperty("valid").GetBoolean(), $"{tenant}: {verify}");
            Assert.True(verify.GetProperty("checked").GetInt64() > acknowledged.Count(o => o.Tenant == tenant), $"{tenant}: {verify}");
        }

        // A batch whose commit outcome was unknown is never written again by the server; if anything did write an
        // event at a seq the chain already has, the chain's key refuses it.
        await using (var again = database.CreateCommand("""
            INSERT INTO audit_events (tenant_id, seq, at, actor_id, actor_name, session_id, type, tool, decision, payload, payload_hash, prev_hash, hash)
            SELECT tenant_id, seq, at, actor_id, actor_name, session_id, type, tool, decision, payload, payload_hash, prev_hash, hash
            FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1
            """))
        {
            again.Parameters.Add(new NpgsqlParameter { Value = Tenants[0] });
            var refused = await Assert.ThrowsAsync<PostgresException>(() => again.ExecuteNonQueryAsync());
            Assert.Equal(PostgresErrorCodes.UniqueViolation, refused.SqlState);
        }

        foreach (var (_, client) in clients)
        {
            client.Dispose();
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(deadline.Elapsed < timeout, $"timed out after {timeout.TotalSeconds} s waiting for {what}");
            await Task.Delay(50);
        }
    }
}
