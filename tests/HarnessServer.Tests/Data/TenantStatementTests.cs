using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using HarnessServer.Data;
using HarnessServer.Identity;
using HarnessServer.Tests.Agents;
using HarnessServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace HarnessServer.Tests.Data;

/// <summary>
/// Every statement the server sends that touches a tenant-owned table filters or writes by <c>tenant_id</c>, so that
/// with the tables distributed by <c>tenant_id</c> (Citus, docs/sharding.md) each one is routed to one tenant's shard;
/// the only exceptions are plain reads by which background passes find the tenants with work, and even they join
/// their tables on <c>tenant_id</c>.
/// The server runs a representative workload over its own cluster with <c>pg_stat_statements</c>; every statement it
/// recorded for the server's login is then read back and checked, table reference by table reference.
/// </summary>
[Collection(AgentCollection.Name)]
public sealed partial class TenantStatementTests(TenantStatementTests.RecordingApplication app) : IClassFixture<TenantStatementTests.RecordingApplication>
{
    private const string Tenant = "sharded";

    /// <summary>The server with a scripted model over a cluster of its own that records every statement.</summary>
    public sealed class RecordingApplication : HarnessApplication
    {
        public ScriptedModelServer Model { get; private set; } = null!;

        protected override Task<PostgresCluster> StartClusterAsync() => PostgresCluster.StartOwnAsync(
            "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.max=20000 -c pg_stat_statements.track=top");

        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["Harness:Model:Endpoint"] = Model.Endpoint;
            settings["Harness:Model:ApiKey"] = "test-key";
            settings["Harness:Model:Id"] = "scripted-model";
            settings["Harness:Approvals:PollInterval"] = "00:00:00.200";
            settings["Harness:Recovery:SweepInterval"] = "00:00:00.500";
            settings["Harness:Agent:RecoveryInterval"] = "00:00:01";
            // The webhook points at a closed loopback port: its deliveries are claimed, fail and are retried.
            settings["Harness:Webhooks:AllowedNetworks:0"] = "127.0.0.1/32";
            settings["Harness:Webhooks:PollInterval"] = "00:00:00.100";
            settings["Harness:Webhooks:InitialBackoff"] = "00:00:00.200";
        }

        public override async Task InitializeAsync()
        {
            Model = await ScriptedModelServer.StartAsync();
            await base.InitializeAsync();
            await ExecuteAsSuperuserAsync("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        }

        public override async ValueTask DisposeAsync()
        {
            await base.DisposeAsync();
            await Model.DisposeAsync();
            await Cluster.DisposeAsync();
        }
    }

    [Fact]
    public async Task Every_statement_on_a_tenant_owned_table_filters_or_writes_by_tenant_id_or_only_finds_work_across_tenants()
    {
        await app.ExecuteAsSuperuserAsync("SELECT pg_stat_statements_reset()");
        await RunWorkloadAsync();

        var tables = TenantOwnedTables();
        var statements = await RecordedStatementsAsync();
        Assert.True(statements.Count > 50, $"Only {statements.Count} statements were recorded: the workload did not run.");
        var touching = statements.Where(s => References(s).Any(r => tables.Contains(r.Table))).ToList();
        Assert.Contains(touching, s => s.Contains("tool_calls", StringComparison.Ordinal));
        Assert.Contains(touching, s => s.Contains("memory_items", StringComparison.Ordinal));
        Assert.Contains(touching, s => s.Contains("agent_messages", StringComparison.Ordinal));
        Assert.Contains(touching, s => s.Contains("approval_votes", StringComparison.Ordinal));

        // A search for work that reads one table needs no tenant; every other reference is filtered or joined on it.
        bool Exempt(string s) => FindsTenantsWithWork(s) && References(s).Count(r => tables.Contains(r.Table)) == 1;
        var offending = touching.Where(s => !Exempt(s))
            .SelectMany(s => References(s).Where(r => tables.Contains(r.Table) && !CarriesTenant(s, r)).Select(r => $"{r.Table} (as {r.Alias}) in: {s}"))
            .Concat(touching.Where(s => !NamesItsTenants(s) && !FindsTenantsWithWork(s)).Select(s => $"no tenant value, and it locks or writes: {s}"))
            .ToList();
        Assert.True(offending.Count == 0,
            $"{offending.Count} of {touching.Count} statements on tenant-owned tables do not filter or write by tenant_id:\n\n" +
            string.Join("\n\n", offending));
    }

    /// <summary>The tables of entities with a <c>TenantId</c>: the ones distributed by <c>tenant_id</c>.</summary>
    internal static HashSet<string> TenantOwnedTables()
    {
        using var db = new DesignTimeDbContextFactory().CreateDbContext([]);
        return db.Model.GetEntityTypes().Where(e => e.FindProperty("TenantId") is not null)
            .Select(e => e.GetTableName()!).ToHashSet(StringComparer.Ordinal);
    }

    private async Task<List<string>> RecordedStatementsAsync()
    {
        await using var connection = new NpgsqlConnection(app.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""
            SELECT query FROM pg_stat_statements s
            JOIN pg_database d ON d.oid = s.dbid
            WHERE d.datname = current_database() AND s.userid <> 'postgres'::regrole
            """, connection);
        var statements = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            statements.Add(reader.GetString(0));
        }

        return statements;
    }

    private readonly record struct TableReference(string Table, string Alias, bool IsInsert, int Start, int End);

    // FROM/JOIN/UPDATE/INTO a table, optionally quoted and schema-qualified, with its alias when it has one.
    [GeneratedRegex("""\b(?<verb>from|join|update|into)\s+(?:public\.)?"?(?<table>[a-z_][a-z0-9_]*)"?(?:\s+(?:as\s+)?"?(?<alias>[a-z_][a-z0-9_]*)"?)?""",
        RegexOptions.IgnoreCase)]
    private static partial Regex TableReferencePattern();

    private static readonly HashSet<string> NotAliases = new(StringComparer.OrdinalIgnoreCase)
    {
        "where", "set", "on", "join", "left", "right", "inner", "outer", "cross", "full", "values", "order", "group", "limit",
        "for", "using", "returning", "select", "default", "union", "having", "offset", "natural", "lateral", "skip", "nowait",
        "of", "and", "or", "with", "window", "fetch", "overriding",
    };

    private static IEnumerable<TableReference> References(string statement)
    {
        foreach (Match match in TableReferencePattern().Matches(statement))
        {
            var table = match.Groups["table"].Value;
            var alias = match.Groups["alias"] is { Success: true } a && !NotAliases.Contains(a.Value) ? a.Value : table;
            yield return new TableReference(table, alias,
                match.Groups["verb"].Value.Equals("into", StringComparison.OrdinalIgnoreCase), match.Index, match.Index + match.Length);
        }
    }

    /// <summary>
    /// The reference is written with its <c>tenant_id</c> (an INSERT whose column list names it), or compared on it:
    /// <c>alias.tenant_id =</c> / <c>IN</c> / <c>= alias.tenant_id</c>, or, for a table without an alias, the bare
    /// column in its own clause. A column merely selected does not count.
    /// </summary>
    private static bool CarriesTenant(string statement, TableReference reference)
    {
        if (reference.IsInsert)
        {
            var columns = statement[reference.End..].TrimStart();
            var close = columns.IndexOf(')');
            return columns.StartsWith('(') && close > 0 && Regex.IsMatch(columns[..close], @"\btenant_id\b");
        }

        var qualified = Regex.Escape(reference.Alias) + @"\.""?tenant_id""?";
        if (Regex.IsMatch(statement, $@"{qualified}\s*(=|\bin\b)|=\s*{qualified}", RegexOptions.IgnoreCase))
        {
            return true;
        }

        // Without an alias the bare column counts in the reference's own clause: up to the next table reference.
        if (reference.Alias != reference.Table)
        {
            return false;
        }

        var next = References(statement).Where(r => r.Start >= reference.End).Select(r => r.Start).DefaultIfEmpty(statement.Length).First();
        return Regex.IsMatch(statement[reference.End..next], @"(?<![.\w])""?tenant_id""?\s*(=|\bin\b)|=\s*(?<![.\w])""?tenant_id\b", RegexOptions.IgnoreCase);
    }

    /// <summary>
    /// The statement names its tenants: <c>tenant_id</c> compared to a parameter or literal, or an INSERT that writes
    /// it, so Citus routes it to that tenant's shard. The audit writer's group commit names a set of tenants, from a
    /// parameter array (<c>tenant_id = ANY($1)</c>, <c>unnest($1::text[]) AS u(tenant_id, ...)</c>): one statement per
    /// batch, which under Citus must be one batch per shard (docs/sharding.md, "The audit chain per tenant").
    /// </summary>
    private static bool NamesItsTenants(string statement) =>
        Regex.IsMatch(statement, @"tenant_id""?\s*(=|\bin\b)\s*(\(?\s*\$\d|'|any\s*\(\s*\$)|(\$\d+|')\s*=\s*(\w+\.)?""?tenant_id\b", RegexOptions.IgnoreCase)
        || Regex.IsMatch(statement, @"\bunnest\s*\(\s*\$\d+::text\[\][^)]*\)\s*as\s+\w+\s*\(\s*tenant_id\b", RegexOptions.IgnoreCase)
        || References(statement).Any(r => r.IsInsert && CarriesTenant(statement, r));

    /// <summary>
    /// A background pass's search for work in every tenant: a plain read, no row lock (in Citus a multi-shard SELECT,
    /// run on every shard in parallel). What it finds is then claimed and changed tenant by tenant.
    /// </summary>
    private static bool FindsTenantsWithWork(string statement) =>
        Regex.IsMatch(statement, @"^\s*select\b", RegexOptions.IgnoreCase)
        && !Regex.IsMatch(statement, @"\bfor\s+(update|share|no\s+key\s+update|key\s+share)\b|\b(insert|update|delete)\b", RegexOptions.IgnoreCase);

    private HttpClient Member(string user) => app.ClientFor(user, Tenant, ["web"]);

    private static Task<HttpResponseMessage> CallAsync(HttpClient client, Guid session, string tool, object arguments) =>
        client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool, arguments });

    private const string OrgPolicy = """
        default: deny
        rules:
          - tool: "fs.*"
            effect: allow
          - tool: "fs.write"
            effect: ask
            args: { path: "reviewed/**" }
          - tool: "shell.exec"
            effect: allow
            args: { command: ["echo *"] }
          - tool: "shell.exec"
            effect: deny
            args: { command: ["rm *"] }
          - tool: "memory.*"
            effect: allow
        """;

    /// <summary>Every kind of request a tenant makes: admin edits, calls of each effect, approvals, turns, memory, audit.</summary>
    private async Task RunWorkloadAsync()
    {
        using var admin = app.ClientFor("ada", Tenant, ["web"], [HarnessRoles.Admin]);
        using var approver = app.ClientFor("anna", Tenant, ["web"], [HarnessRoles.Approver]);
        using var auditor = app.ClientFor("audrey", Tenant, roles: [HarnessRoles.Auditor]);
        using var member = Member("mel");

        // Admin: policies (with history and a simulation), the registry, the allow-list, agent settings, a webhook.
        (await admin.PutAsync("/v1/admin/policies/org", new StringContent(OrgPolicy, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
        (await admin.PutAsync("/v1/admin/policies/teams/web", new StringContent("rules: []\n", Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
        (await admin.GetAsync("/v1/admin/policies/org")).EnsureSuccessStatusCode();
        (await admin.GetAsync("/v1/admin/policies/history")).EnsureSuccessStatusCode();
        (await admin.GetAsync("/v1/admin/permissions/mel?teams=web")).EnsureSuccessStatusCode();
        await (await admin.PostAsJsonAsync("/v1/admin/tools", new
        {
            name = "say.it", description = "Echo a word", kind = "command", argv = new[] { "echo", "{word}" },
            schema = new { type = "object", required = new[] { "word" }, properties = new { word = new { type = "string", pattern = "^[a-z]+$" } } },
        })).JsonAsync(HttpStatusCode.Created);
        (await admin.GetAsync("/v1/admin/tools")).EnsureSuccessStatusCode();
        (await admin.PutAsJsonAsync("/v1/admin/http-fetch/domains", new { domains = new[] { "example.org" } })).EnsureSuccessStatusCode();
        (await admin.PutAsJsonAsync("/v1/admin/agent-settings", new { memoryRetrieval = true, memoryItems = 3 })).EnsureSuccessStatusCode();
        (await admin.PutAsJsonAsync("/v1/admin/webhook", new { url = "http://127.0.0.1:9/hook", secret = "whsec-sharding-test-0123456789" })).EnsureSuccessStatusCode();

        // A member's calls of each effect, an approval granted and one refused, pause and resume.
        (await member.GetAsync("/v1/me/permissions")).EnsureSuccessStatusCode();
        var session = (await (await member.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
        await (await CallAsync(member, session, "fs.write", new { path = "a.txt", content = "1" })).JsonAsync(HttpStatusCode.OK);
        await (await CallAsync(member, session, "shell.exec", new { command = "echo hi" })).JsonAsync(HttpStatusCode.OK);
        await (await CallAsync(member, session, "shell.exec", new { command = "rm -rf ." })).JsonAsync(HttpStatusCode.OK);
        await (await CallAsync(member, session, "no.such.tool", new { })).JsonAsync(HttpStatusCode.OK);
        var held = await (await CallAsync(member, session, "fs.write", new { path = "reviewed/b.txt", content = "2" })).JsonAsync(HttpStatusCode.Accepted);
        var refused = await (await CallAsync(member, session, "fs.write", new { path = "reviewed/c.txt", content = "3" })).JsonAsync(HttpStatusCode.Accepted);
        (await approver.GetAsync("/v1/approvals?status=pending")).EnsureSuccessStatusCode();
        (await member.GetAsync("/v1/me/approvals")).EnsureSuccessStatusCode();
        await (await approver.PostAsJsonAsync($"/v1/approvals/{held.GetProperty("approvalId").GetGuid()}/decision", new { approve = true, comment = "ok" })).JsonAsync(HttpStatusCode.OK);
        await (await approver.PostAsJsonAsync($"/v1/approvals/{refused.GetProperty("approvalId").GetGuid()}/decision", new { approve = false, comment = "no" })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("succeeded", await member.WaitForCallStatusAsync(session, held.GetProperty("id").GetGuid(), "succeeded"));
        (await member.PostAsync($"/v1/sessions/{session}/pause", null)).EnsureSuccessStatusCode();
        (await member.PostAsync($"/v1/sessions/{session}/resume", null)).EnsureSuccessStatusCode();

        // Agent turns with the scripted model: one that runs a call, one that waits for an approval and continues;
        // then a rollback.
        app.Model.Reset();
        app.Model.Call("fs_write", new { path = "notes.txt", content = "x" }).Reply("Written.")
            .Call("fs_write", new { path = "reviewed/plan.md", content = "plan" }).Reply("The plan is written.");
        await (await member.PostAsJsonAsync($"/v1/sessions/{session}/messages", new { content = "Write notes." })).JsonAsync(HttpStatusCode.OK);
        var waiting = await (await member.PostAsJsonAsync($"/v1/sessions/{session}/messages", new { content = "Write the plan." })).JsonAsync(HttpStatusCode.Accepted);
        var pending = waiting.GetProperty("toolCalls")[0];
        await (await approver.PostAsJsonAsync($"/v1/approvals/{pending.GetProperty("approvalId").GetGuid()}/decision", new { approve = true })).JsonAsync(HttpStatusCode.OK);
        var turnUrl = $"/v1/sessions/{session}/turns/{waiting.GetProperty("turnId").GetGuid()}";
        for (var i = 0; i < 100 && (await (await member.GetAsync(turnUrl)).JsonAsync(HttpStatusCode.OK)).GetProperty("status").GetString() != "completed"; i++)
        {
            await Task.Delay(100);
        }

        Assert.Equal("completed", (await (await member.GetAsync(turnUrl)).JsonAsync(HttpStatusCode.OK)).GetProperty("status").GetString());
        (await member.GetAsync($"/v1/sessions/{session}")).EnsureSuccessStatusCode();
        (await member.GetAsync($"/v1/sessions/{session}/messages")).EnsureSuccessStatusCode();
        (await member.GetAsync($"/v1/sessions/{session}/usage")).EnsureSuccessStatusCode();
        (await admin.GetAsync("/v1/admin/usage")).EnsureSuccessStatusCode();
        var checkpoints = await (await member.GetAsync($"/v1/sessions/{session}/checkpoints")).JsonAsync(HttpStatusCode.OK);
        (await member.PostAsJsonAsync($"/v1/sessions/{session}/rollback", new { checkpoint = checkpoints[0].GetProperty("id").GetGuid() })).EnsureSuccessStatusCode();

        // Memory in each kind of namespace, saved, listed, searched and deleted.
        foreach (var ns in new[] { "org", "user", "team:web", $"session:{session}" })
        {
            var saved = await (await member.PostAsJsonAsync($"/v1/memory/{ns}/items", new { content = $"the deploy key rotates monthly ({ns})" })).JsonAsync(HttpStatusCode.Created);
            (await member.PostAsJsonAsync($"/v1/memory/{ns}/search", new { query = "deploy key", k = 3 })).EnsureSuccessStatusCode();
            (await member.GetAsync($"/v1/memory/{ns}/items")).EnsureSuccessStatusCode();
            if (ns == "user")
            {
                (await member.DeleteAsync($"/v1/memory/{ns}/items/{saved.GetProperty("id").GetGuid()}")).EnsureSuccessStatusCode();
            }
        }

        // The audit trail, read every way a reviewer reads it, and a signed checkpoint.
        (await auditor.GetAsync("/v1/audit/events?limit=1000")).EnsureSuccessStatusCode();
        (await auditor.GetAsync("/v1/audit/events?user=mel&tool=fs.write&outcome=allow")).EnsureSuccessStatusCode();
        (await auditor.PostAsync("/v1/audit/checkpoints", null)).EnsureSuccessStatusCode();
        (await auditor.GetAsync("/v1/audit/checkpoints")).EnsureSuccessStatusCode();
        Assert.True((await (await auditor.GetAsync("/v1/audit/verify")).JsonAsync(HttpStatusCode.OK)).GetProperty("valid").GetBoolean());
        (await auditor.GetAsync("/v1/audit/export")).EnsureSuccessStatusCode();
        (await admin.GetAsync("/v1/admin/webhook/deliveries")).EnsureSuccessStatusCode();

        // The background passes (approved calls, interrupted calls, turns, webhook deliveries) take a few turns.
        await Task.Delay(TimeSpan.FromSeconds(3));
    }
}
