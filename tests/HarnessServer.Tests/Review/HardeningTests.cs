using System.Net;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace HarnessServer.Tests.Review;

/// <summary>
/// Issue 16: no request body, token claim or tool output makes the server answer 503 while the audit is healthy,
/// and one append that cannot be recorded fails only itself, never the writer's batch of other tenants' appends.
/// </summary>
public sealed class HardeningTests(HardeningApplication app) : IClassFixture<HardeningApplication>
{
    private static readonly string PoisonedName = new string('\u0001', 100) + new string('a', 100);

    private static async Task<Guid> NewSessionAsync(HttpClient client) =>
        (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

    private static Task<HttpResponseMessage> CallAsync(HttpClient client, Guid session, object body) =>
        client.PostAsync($"/v1/sessions/{session}/tool-calls", new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"));

    private static Task<HttpResponseMessage> RawCallAsync(HttpClient client, Guid session, string json) =>
        client.PostAsync($"/v1/sessions/{session}/tool-calls", new StringContent(json, Encoding.UTF8, "application/json"));

    private async Task AssertChainValidAsync(string tenant)
    {
        using var auditor = app.ClientFor("auditor", tenant, roles: [HarnessRoles.Auditor]);
        var verify = await (await auditor.GetAsync("/v1/audit/verify")).JsonAsync(HttpStatusCode.OK);
        Assert.True(verify.GetProperty("valid").GetBoolean(), verify.ToString());
    }

    // 100 controls (6 canonical bytes each) in a 200-character name overflowed the writer's buffer inside the batch: 503.
    [Fact]
    public async Task Hardening_tool_name_of_control_characters_is_rejected_not_503()
    {
        using var client = app.ClientFor("poison-name", HardeningApplication.Tenant, ["web"]);
        var session = await NewSessionAsync(client);

        var call = await (await CallAsync(client, session, new { tool = PoisonedName, arguments = new { } })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("rejected", call.GetProperty("status").GetString());
        Assert.Equal("unknown_tool", call.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(PoisonedName, await app.ScalarAsSuperuserAsync<string>(
            "SELECT tool FROM audit_events WHERE tenant_id = $1 AND type = 'tool_call.rejected' AND payload->>'callId' = $2",
            HardeningApplication.Tenant, call.GetProperty("id").GetGuid().ToString()));
        await AssertChainValidAsync(HardeningApplication.Tenant);
    }

    [Fact]
    public async Task Hardening_display_name_of_control_characters_is_recorded_not_503()
    {
        var name = new string('\u0007', 150) + "\u001f\u007f\u0085 Mallory";
        using var client = app.ClientFor("control-name", HardeningApplication.Tenant, ["web"], name: name);
        var session = await NewSessionAsync(client);

        var call = await (await CallAsync(client, session, new { tool = "shell.exec", arguments = new { command = "echo hi" } })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("succeeded", call.GetProperty("status").GetString());
        Assert.Equal(name, await app.ScalarAsSuperuserAsync<string>(
            "SELECT actor_name FROM audit_events WHERE tenant_id = $1 AND actor_id = 'control-name' AND type = 'tool_call.executed'",
            HardeningApplication.Tenant));
        await AssertChainValidAsync(HardeningApplication.Tenant);
    }

    // A text column cannot hold NUL; an unpaired surrogate has no UTF-8 form: refused where they enter, with a reason.
    [Theory]
    [InlineData("name")]
    [InlineData("user")]
    [InlineData("team")]
    public async Task Hardening_claims_a_text_column_cannot_hold_are_401(string which)
    {
        using var client = which switch
        {
            "name" => app.ClientFor("nul-name", HardeningApplication.Tenant, ["web"], name: "Eve\0"),
            "user" => app.ClientFor("nul\0user", HardeningApplication.Tenant, ["web"]),
            _ => app.ClientFor("nul-team", HardeningApplication.Tenant, ["we\0b"]),
        };

        var problem = await (await client.GetAsync("/v1/me")).ProblemAsync(HttpStatusCode.Unauthorized);

        Assert.Contains("cannot be recorded", problem.GetProperty("detail").GetString());
    }

    [Theory]
    [InlineData("{\"tool\":\"fs.read\\u0000\",\"arguments\":{}}", "bad_request")]
    [InlineData("{\"tool\":\"fs.read\",\"arguments\":{\"path\":\"src/a\\u0000.txt\"}}", "invalid_arguments")]
    [InlineData("{\"tool\":\"fs.read\",\"arguments\":{\"path\":\"src/\\ud800.txt\"}}", "invalid_arguments")]
    [InlineData("{\"tool\":\"fs.read\",\"arguments\":{\"path\":\"src/a.txt\",\"\\udc00\":1}}", "invalid_arguments")]
    [InlineData("{\"tool\":\"fs.read\",\"arguments\":{\"path\":\"src/a.txt\",\"x\":[\"\\u0000\"]}}", "invalid_arguments")]
    public async Task Hardening_bodies_a_text_or_jsonb_column_cannot_hold_are_400(string body, string code)
    {
        using var client = app.ClientFor("nul-body", HardeningApplication.Tenant, ["web"]);
        var session = await NewSessionAsync(client);

        await (await RawCallAsync(client, session, body)).ProblemAsync(HttpStatusCode.BadRequest, code);

        var history = await (await client.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
        Assert.Empty(history.GetProperty("toolCalls").EnumerateArray());
    }

    [Theory]
    [InlineData("{\"tool\":\"fs.read\\ud800\",\"arguments\":{}}")]
    [InlineData("{\"approve\":true,\"comment\":\"ok\\u0000\"}")]
    public async Task Hardening_bound_strings_with_NUL_or_lone_surrogates_are_400(string body)
    {
        using var client = app.ClientFor("bound-body", HardeningApplication.Tenant, ["web"], [HarnessRoles.Approver]);
        var session = await NewSessionAsync(client);
        var url = body.Contains("approve") ? $"/v1/approvals/{Guid.NewGuid()}/decision" : $"/v1/sessions/{session}/tool-calls";

        var response = await client.PostAsync(url, new StringContent(body, Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    // One tenant floods the writer with names that could not be hashed or stored; the other's calls, sharing its
    // batches, all succeed, and both chains verify.
    [Fact]
    public async Task Hardening_poisoned_appends_of_one_tenant_never_fail_another_tenants_calls()
    {
        using var attacker = app.ClientFor("attacker", HardeningApplication.Tenant, ["web"], name: new string('\u0002', 300));
        using var victim = app.ClientFor("victim", HardeningApplication.OtherTenant, ["web"]);
        var attackerSession = await NewSessionAsync(attacker);
        var victimSessions = new List<Guid>();
        for (var i = 0; i < 8; i++)
        {
            victimSessions.Add(await NewSessionAsync(victim));
        }

        var attacks = Enumerable.Range(0, 80).Select(async i =>
        {
            var response = i % 2 == 0
                ? await CallAsync(attacker, attackerSession, new { tool = new string((char)(1 + i % 30), 150) + i, arguments = new { } })
                : await RawCallAsync(attacker, attackerSession, "{\"tool\":\"x\\u0000" + i + "\",\"arguments\":{}}");
            return response.StatusCode;
        });
        var calls = Enumerable.Range(0, 80).Select(async i =>
        {
            var response = await CallAsync(victim, victimSessions[i % victimSessions.Count], new { tool = "shell.exec", arguments = new { command = $"echo {i}" } });
            return (await response.JsonAsync(HttpStatusCode.OK)).GetProperty("status").GetString();
        });

        var attackStatuses = await Task.WhenAll(attacks);
        var victimStatuses = await Task.WhenAll(calls);

        Assert.All(victimStatuses, s => Assert.Equal("succeeded", s));
        Assert.All(attackStatuses, s => Assert.True(s is HttpStatusCode.OK or HttpStatusCode.BadRequest, s.ToString()));
        await AssertChainValidAsync(HardeningApplication.Tenant);
        await AssertChainValidAsync(HardeningApplication.OtherTenant);
        Assert.Equal(80, await app.CountAsync(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = 'tool_call.executed'", HardeningApplication.OtherTenant));
    }

    // Issue 16, finding 2: a NUL in the output failed the jsonb write; the call had no executed event and stayed
    // running. Under the shipped policies (acme's org allows "head *").
    [Fact]
    public async Task Hardening_output_with_a_NUL_is_stored_as_base64_and_the_call_is_recorded()
    {
        using var client = app.ClientFor("binary-output", "acme");
        var session = await NewSessionAsync(client);

        var call = await (await CallAsync(client, session, new { tool = "shell.exec", arguments = new { command = "head -c 1 /dev/zero" } })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("succeeded", call.GetProperty("status").GetString());
        Assert.Equal("AA==", call.GetProperty("result").GetProperty("stdout").GetString());
        Assert.Equal("base64", call.GetProperty("result").GetProperty("stdoutEncoding").GetString());
        Assert.False(call.GetProperty("result").TryGetProperty("stderrEncoding", out _));
        var id = call.GetProperty("id").GetGuid();
        Assert.Equal("succeeded", await client.WaitForCallStatusAsync(session, id, "succeeded"));
        Assert.Equal(1, await app.CountAsync(
            "SELECT count(*) FROM audit_events WHERE tenant_id = 'acme' AND type = 'tool_call.executed' AND payload->>'callId' = $1", id.ToString()));
        Assert.Equal("AA==", await app.ScalarAsSuperuserAsync<string>("SELECT result->>'stdout' FROM tool_calls WHERE id = $1", id));
    }

    [Fact]
    public async Task Hardening_binary_file_is_read_as_base64_without_loss()
    {
        using var client = app.ClientFor("binary-file", "acme");
        var session = await NewSessionAsync(client);
        await (await CallAsync(client, session, new { tool = "fs.list", arguments = new { path = "." } })).JsonAsync(HttpStatusCode.OK);
        byte[] bytes = [0x00, 0xFF, 0x41, 0xC3, 0x0A];
        await File.WriteAllBytesAsync(Path.Combine(app.DataRoot, "workspaces", "acme", session.ToString(), "blob.bin"), bytes);
        await File.WriteAllTextAsync(Path.Combine(app.DataRoot, "workspaces", "acme", session.ToString(), "text.txt"), "héllo\n");

        var binary = await (await CallAsync(client, session, new { tool = "fs.read", arguments = new { path = "blob.bin" } })).JsonAsync(HttpStatusCode.OK);
        var text = await (await CallAsync(client, session, new { tool = "fs.read", arguments = new { path = "text.txt" } })).JsonAsync(HttpStatusCode.OK);
        var head = await (await CallAsync(client, session, new { tool = "shell.exec", arguments = new { command = "head -c 4 blob.bin" } })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("succeeded", binary.GetProperty("status").GetString());
        Assert.Equal(bytes, Convert.FromBase64String(binary.GetProperty("result").GetProperty("content").GetString()!));
        Assert.Equal("base64", binary.GetProperty("result").GetProperty("encoding").GetString());
        Assert.Equal("héllo\n", text.GetProperty("result").GetProperty("content").GetString());
        Assert.False(text.GetProperty("result").TryGetProperty("encoding", out _));
        Assert.Equal(bytes[..4], Convert.FromBase64String(head.GetProperty("result").GetProperty("stdout").GetString()!));
        var stored = await app.ScalarAsSuperuserAsync<string>("SELECT result->>'content' FROM tool_calls WHERE id = $1", binary.GetProperty("id").GetGuid());
        Assert.Equal(bytes, Convert.FromBase64String(stored!));
        await AssertChainValidAsync("acme");
    }

    // When the result cannot be stored for any reason, what ran is still recorded: the executed event (with the
    // result's hash) and the final status, instead of a 503 and a call left running.
    [Fact]
    public async Task Hardening_a_result_the_database_refuses_still_gets_its_executed_event()
    {
        await app.ExecuteAsSuperuserAsync("""
            CREATE OR REPLACE FUNCTION refuse_poisoned_result() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.result::text LIKE '%refuse-this-result%' THEN RAISE EXCEPTION 'result refused'; END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_poisoned_result BEFORE UPDATE ON tool_calls FOR EACH ROW EXECUTE FUNCTION refuse_poisoned_result();
            """);
        try
        {
            using var client = app.ClientFor("refused-result", HardeningApplication.Tenant, ["web"]);
            var session = await NewSessionAsync(client);

            var call = await (await CallAsync(client, session, new { tool = "shell.exec", arguments = new { command = "echo refuse-this-result" } })).JsonAsync(HttpStatusCode.OK);

            Assert.Equal("succeeded", call.GetProperty("status").GetString());
            Assert.Equal("result_not_stored", call.GetProperty("error").GetProperty("code").GetString());
            var id = call.GetProperty("id").GetGuid().ToString();
            Assert.Equal("Succeeded", await app.ScalarAsSuperuserAsync<string>("SELECT status FROM tool_calls WHERE id = $1::uuid", id));
            Assert.Equal("false", await app.ScalarAsSuperuserAsync<string>(
                "SELECT payload->>'resultStored' FROM audit_events WHERE type = 'tool_call.executed' AND payload->>'callId' = $1", id));
            Assert.NotNull(await app.ScalarAsSuperuserAsync<string>(
                "SELECT payload->>'resultHash' FROM audit_events WHERE type = 'tool_call.executed' AND payload->>'callId' = $1", id));
        }
        finally
        {
            await app.ExecuteAsSuperuserAsync("DROP TRIGGER refuse_poisoned_result ON tool_calls; DROP FUNCTION refuse_poisoned_result()");
        }
    }

    // A call left running while its process lives on (its executed event could not be written) is found by the
    // periodic sweep, not only by the next start.
    [Fact]
    public async Task Hardening_a_call_left_running_is_found_by_the_periodic_sweep()
    {
        using var client = app.ClientFor("left-running", HardeningApplication.Tenant, ["web"]);
        var session = await NewSessionAsync(client);
        var call = await (await CallAsync(client, session, new { tool = "shell.exec", arguments = new { command = "echo once" } })).JsonAsync(HttpStatusCode.OK);
        var id = call.GetProperty("id").GetGuid();
        await app.ExecuteAsSuperuserAsync("UPDATE tool_calls SET status = 'Running', completed_at = NULL WHERE id = $1", id);

        Assert.Equal("interrupted", await client.WaitForCallStatusAsync(session, id, "interrupted"));
        Assert.Equal(1, await app.CountAsync(
            "SELECT count(*) FROM audit_events WHERE type = 'tool_call.interrupted' AND payload->>'callId' = $1", id.ToString()));
        await AssertChainValidAsync(HardeningApplication.Tenant);
    }

    private async Task DefineToolAsync(string name, string[] argv, object properties)
    {
        using var admin = app.ClientFor("admin", HardeningApplication.Tenant, roles: [HarnessRoles.Admin]);
        var response = await admin.PostAsync("/v1/admin/tools", new StringContent(JsonSerializer.Serialize(new
        {
            name, kind = "command", argv, schema = new { type = "object", properties },
        }), Encoding.UTF8, "application/json"));
        await response.JsonAsync(HttpStatusCode.Created);
    }

    // Issue 16, finding 7: a placeholder value starting with '-' reached the program as an option
    // (git log {ref} with ref "--output=/workspace/x" writes a file).
    [Fact]
    public async Task Hardening_placeholder_value_starting_with_a_dash_is_refused_unless_after_double_dash_or_listed()
    {
        await DefineToolAsync("cmd.name", ["basename", "{path}"], new { path = new { type = "string" } });
        await DefineToolAsync("cmd.ended", ["basename", "--", "{path}"], new { path = new { type = "string" } });
        await DefineToolAsync("cmd.listed", ["uname", "{flag}"], new { flag = new { type = "string", @enum = new[] { "-s" } } });
        using var client = app.ClientFor("dash-user", HardeningApplication.Tenant, ["web"]);
        var session = await NewSessionAsync(client);

        var option = await (await CallAsync(client, session, new { tool = "cmd.name", arguments = new { path = "--help" } })).JsonAsync(HttpStatusCode.OK);
        var plain = await (await CallAsync(client, session, new { tool = "cmd.name", arguments = new { path = "a/b" } })).JsonAsync(HttpStatusCode.OK);
        var ended = await (await CallAsync(client, session, new { tool = "cmd.ended", arguments = new { path = "-n" } })).JsonAsync(HttpStatusCode.OK);
        var listed = await (await CallAsync(client, session, new { tool = "cmd.listed", arguments = new { flag = "-s" } })).JsonAsync(HttpStatusCode.OK);

        Assert.Equal("rejected", option.GetProperty("status").GetString());
        Assert.Equal("invalid_arguments", option.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("starts with '-'", option.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal("/path", option.GetProperty("error").GetProperty("arguments")[0].GetProperty("path").GetString());
        Assert.Equal("b\n", plain.GetProperty("result").GetProperty("stdout").GetString());
        Assert.Equal("-n\n", ended.GetProperty("result").GetProperty("stdout").GetString());
        Assert.Equal("Linux\n", listed.GetProperty("result").GetProperty("stdout").GetString());
    }

    // The schema is stored as jsonb and hashed into the tool's digest; a NUL in it failed the write (503).
    [Fact]
    public async Task Hardening_tool_schema_a_jsonb_column_cannot_hold_is_a_400()
    {
        using var admin = app.ClientFor("admin", HardeningApplication.Tenant, roles: [HarnessRoles.Admin]);

        var response = await admin.PostAsync("/v1/admin/tools", new StringContent(
            "{\"name\":\"cmd.nul\",\"kind\":\"command\",\"argv\":[\"true\"],\"schema\":{\"type\":\"object\",\"description\":\"a\\u0000b\"}}",
            Encoding.UTF8, "application/json"));

        var problem = await response.ProblemAsync(HttpStatusCode.BadRequest, "invalid_tool");
        Assert.Contains("cannot be stored", problem.GetProperty("detail").GetString());
    }

    // Issue 16, finding 5: the database owner cut a chain's tail (events, checkpoints, head) and verification, which
    // compares against what lives in that same database, said valid. A checkpoint from the anchor file catches it.
    [Fact]
    public async Task Hardening_a_tail_cut_in_the_database_fails_against_the_anchor_file()
    {
        const string tenant = "anchored";
        using var client = app.ClientFor("anchored-user", tenant);
        var session = await NewSessionAsync(client);
        for (var i = 0; i < 3; i++)
        {
            await (await CallAsync(client, session, new { tool = "shell.exec", arguments = new { command = $"echo {i}" } })).JsonAsync(HttpStatusCode.OK);
        }

        using var auditor = app.ClientFor("auditor", tenant, roles: [HarnessRoles.Auditor]);
        var checkpoint = await (await auditor.PostAsync("/v1/audit/checkpoints", null)).JsonAsync(HttpStatusCode.OK);
        var anchor = File.ReadAllLines(app.AnchorPath).Last(l => l.Contains($"\"tenant\":\"{tenant}\"", StringComparison.Ordinal));
        Assert.Equal(checkpoint.GetProperty("hash").GetString(), JsonDocument.Parse(anchor).RootElement.GetProperty("hash").GetString());

        await using (var connection = new Npgsql.NpgsqlConnection(app.ConnectionString))
        {
            await connection.OpenAsync();
            await using var cut = new Npgsql.NpgsqlCommand($"""
                SET session_replication_role = replica;
                DELETE FROM audit_events WHERE tenant_id = '{tenant}' AND seq > 2;
                DELETE FROM audit_checkpoints WHERE tenant_id = '{tenant}';
                UPDATE audit_heads SET seq = 2, hash = (SELECT hash FROM audit_events WHERE tenant_id = '{tenant}' AND seq = 2) WHERE tenant_id = '{tenant}';
                """, connection);
            await cut.ExecuteNonQueryAsync();
        }

        var inDatabase = await (await auditor.GetAsync("/v1/audit/verify")).JsonAsync(HttpStatusCode.OK);
        var anchored = await (await auditor.GetAsync("/v1/audit/verify?checkpoint=" + Uri.EscapeDataString(anchor))).JsonAsync(HttpStatusCode.OK);
        var forged = await (await auditor.GetAsync("/v1/audit/verify?checkpoint=" + Uri.EscapeDataString(anchor.Replace("\"seq\":", "\"seq\":1", StringComparison.Ordinal)))).JsonAsync(HttpStatusCode.OK);
        await (await auditor.GetAsync("/v1/audit/verify?checkpoint=not-json")).ProblemAsync(HttpStatusCode.BadRequest, "invalid_checkpoint");

        Assert.True(inDatabase.GetProperty("valid").GetBoolean());
        Assert.False(anchored.GetProperty("valid").GetBoolean());
        Assert.Contains("removed from the tail", anchored.GetProperty("reason").GetString());
        Assert.False(forged.GetProperty("valid").GetBoolean());
        Assert.Contains("not signed", forged.GetProperty("reason").GetString());

        var export = Path.Combine(app.DataRoot, "anchored-export.jsonl");
        await File.WriteAllBytesAsync(export, await auditor.GetByteArrayAsync("/v1/audit/export"));
        var (plainOk, _) = await RunVerifierAsync(export);
        var (anchoredOk, output) = await RunVerifierAsync(export, "--checkpoint", app.AnchorPath);
        Assert.True(plainOk);
        Assert.False(anchoredOk);
        Assert.Contains("removed from the tail", output);
    }

    // Issue 16, anchoring: the file is one anchor outside the database; a receiver the operator runs elsewhere is the
    // other. Every new checkpoint reaches it, signed, and a refused push is retried until it is accepted.
    [Fact]
    public async Task Hardening_new_checkpoints_are_pushed_to_the_anchor_receiver_and_a_failed_push_is_retried()
    {
        const string tenant = "pushed";
        using var client = app.ClientFor("pushed-user", tenant);
        var session = await NewSessionAsync(client);
        await (await CallAsync(client, session, new { tool = "shell.exec", arguments = new { command = "echo pushed" } })).JsonAsync(HttpStatusCode.OK);
        using var auditor = app.ClientFor("auditor", tenant, roles: [HarnessRoles.Auditor]);
        app.Anchors.FailNext(HttpStatusCode.InternalServerError);

        var checkpoint = await (await auditor.PostAsync("/v1/audit/checkpoints", null)).JsonAsync(HttpStatusCode.OK);

        var received = await app.Anchors.NextForAsync(tenant, TimeSpan.FromSeconds(15));
        Assert.Equal("Bearer " + HardeningApplication.AnchorToken, received.Authorization);
        Assert.Equal(checkpoint.GetProperty("seq").GetInt64(), received.Body.GetProperty("seq").GetInt64());
        Assert.Equal(checkpoint.GetProperty("hash").GetString(), received.Body.GetProperty("hash").GetString());
        Assert.Equal(checkpoint.GetProperty("signature").GetString(), received.Body.GetProperty("signature").GetString());
        Assert.True(app.Anchors.Refused >= 1);
        var verified = await (await auditor.GetAsync("/v1/audit/verify?checkpoint=" + Uri.EscapeDataString(received.Body.GetRawText()))).JsonAsync(HttpStatusCode.OK);
        Assert.True(verified.GetProperty("valid").GetBoolean(), verified.GetRawText());
    }

    private static async Task<(bool Ok, string Output)> RunVerifierAsync(params string[] arguments)
    {
        var start = new System.Diagnostics.ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(HarnessApplication.RepositoryRoot, "scripts", "verify-audit-export.py"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = System.Diagnostics.Process.Start(start)!;
        var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode == 0, output);
    }
}

public sealed class HardeningApplication : HarnessApplication
{
    public const string Tenant = "hardening";
    public const string OtherTenant = "hardening-other";

    public const string OrgPolicy = """
        default: deny
        rules:
          - tool: "fs.*"
            effect: allow
            args: { path: "src/**" }
          - tool: "shell.exec"
            effect: allow
            args: { command: ["echo *", "head *"] }
          - tool: "cmd.*"
            effect: allow
        """;

    // The shipped policies (policies/acme) are imported, so finding 2 is reproduced under their "head *" rule.
    protected override void Configure(IDictionary<string, string?> settings)
    {
        settings["Harness:PoliciesPath"] = Path.Combine(RepositoryRoot, "policies");
        settings["Harness:Recovery:SweepInterval"] = "00:00:00.300";
        settings["Harness:Audit:AnchorPath"] = AnchorPath;
        settings["Harness:Audit:AnchorUrl"] = Anchors.Url;
        settings["Harness:Audit:AnchorToken"] = AnchorToken;
    }

    public const string AnchorToken = "anchor-receiver-token";

    /// <summary>The operator's anchor receiver, on loopback.</summary>
    public AnchorReceiver Anchors { get; } = AnchorReceiver.Start();

    public string AnchorPath => Path.Combine(DataRoot, "audit-anchors.jsonl");

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        await Anchors.DisposeAsync();
    }

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        foreach (var tenant in new[] { Tenant, OtherTenant })
        {
            using var admin = ClientFor("admin", tenant, roles: [HarnessRoles.Admin]);
            var put = await admin.PutAsync("/v1/admin/policies/org", new StringContent(OrgPolicy, Encoding.UTF8, "application/yaml"));
            put.EnsureSuccessStatusCode();
        }
    }
}

/// <summary>An anchor receiver on a loopback port: records every POSTed checkpoint, refusing the ones it is told to.</summary>
public sealed class AnchorReceiver : IAsyncDisposable
{
    private readonly Microsoft.AspNetCore.Builder.WebApplication _app;
    private readonly System.Threading.Channels.Channel<(string? Authorization, JsonElement Body)> _received =
        System.Threading.Channels.Channel.CreateUnbounded<(string?, JsonElement)>();
    private int _failNext;
    private int _refused;

    private AnchorReceiver(Microsoft.AspNetCore.Builder.WebApplication app) => _app = app;

    public string Url { get; private set; } = "";

    public int Refused => Volatile.Read(ref _refused);

    public static AnchorReceiver Start()
    {
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var receiver = new AnchorReceiver(builder.Build());
        receiver._app.MapPost("/anchors", async (Microsoft.AspNetCore.Http.HttpContext context) =>
        {
            var body = await JsonSerializer.DeserializeAsync<JsonElement>(context.Request.Body);
            if (Interlocked.Exchange(ref receiver._failNext, 0) is var status and not 0)
            {
                Interlocked.Increment(ref receiver._refused);
                return Microsoft.AspNetCore.Http.Results.StatusCode(status);
            }

            receiver._received.Writer.TryWrite((context.Request.Headers.Authorization.ToString(), body));
            return Microsoft.AspNetCore.Http.Results.Ok();
        });
        receiver._app.StartAsync().GetAwaiter().GetResult();
        var address = receiver._app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses.First();
        receiver.Url = address + "/anchors";
        return receiver;
    }

    public void FailNext(HttpStatusCode status) => Volatile.Write(ref _failNext, (int)status);

    /// <summary>The next checkpoint of <paramref name="tenant"/> the receiver accepted.</summary>
    public async Task<(string? Authorization, JsonElement Body)> NextForAsync(string tenant, TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        while (true)
        {
            var received = await _received.Reader.ReadAsync(timeout.Token);
            if (received.Body.GetProperty("tenant").GetString() == tenant)
            {
                return received;
            }
        }
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
