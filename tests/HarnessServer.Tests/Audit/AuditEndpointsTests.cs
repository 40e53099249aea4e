using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;
using static HarnessServer.Tests.Audit.AuditTestData;

namespace HarnessServer.Tests.Audit;

public sealed class AuditEndpointsTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private HttpClient Auditor(string tenant) => app.ClientFor("carol", tenant, roles: [HarnessRoles.Auditor]);

    private async Task SeedAsync(string tenant, int count)
    {
        var entries = Enumerable.Range(1, count).Select(i => new AuditEntry(
            i % 5 == 0 ? "tool.denied" : "tool.executed",
            i % 2 == 0 ? new AuditActor("bob", "Bob") : Alice,
            Tool: i % 3 == 0 ? "shell.exec" : "fs.read",
            Decision: new JsonObject { ["effect"] = i % 5 == 0 ? "deny" : "allow", ["level"] = "org" },
            Payload: new JsonObject { ["i"] = i, ["status"] = i % 7 == 0 ? "failed" : "succeeded", ["text"] = "ünï\u0001\"" })).ToList();
        await app.Service<AuditChain>().AppendAsync(tenant, entries, default);
    }

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    private static long[] Seqs(JsonElement page) => page.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("seq").GetInt64()).ToArray();

    [Theory]
    [InlineData("/v1/audit/events")]
    [InlineData("/v1/audit/verify")]
    [InlineData("/v1/audit/export")]
    [InlineData("/v1/audit/checkpoints")]
    public async Task A_member_gets_403_problem(string path)
    {
        using var member = app.ClientFor("dave", "acme-403", roles: [HarnessRoles.Approver]);

        var response = await member.GetAsync(path);

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task Events_page_oldest_first_by_after_until_next_is_null()
    {
        await SeedAsync("paging", 25);
        using var client = app.ClientFor("root", "paging", roles: [HarnessRoles.Admin]);

        var seen = new List<long>();
        long? after = null;
        do
        {
            var page = await JsonAsync(await client.GetAsync($"/v1/audit/events?limit=10{(after is null ? "" : $"&after={after}")}"));
            seen.AddRange(Seqs(page));
            after = page.GetProperty("next").ValueKind == JsonValueKind.Null ? null : page.GetProperty("next").GetInt64();
        }
        while (after is not null);

        Assert.Equal(Enumerable.Range(1, 25).Select(i => (long)i), seen);
        var first = (await JsonAsync(await client.GetAsync("/v1/audit/events?limit=1"))).GetProperty("events")[0];
        Assert.Equal("alice", first.GetProperty("actor").GetProperty("id").GetString());
        Assert.Equal("Alice Ng", first.GetProperty("actor").GetProperty("name").GetString());
        Assert.Equal(new string('0', 64), first.GetProperty("prevHash").GetString());
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", first.GetProperty("at").GetString());
        Assert.Equal(HttpStatusCode.BadRequest, (await client.GetAsync("/v1/audit/events?limit=1001")).StatusCode);
    }

    [Theory]
    [InlineData("user=bob", new long[] { 2, 4, 6, 8, 10, 12, 14 })]
    [InlineData("tool=shell.exec", new long[] { 3, 6, 9, 12 })]
    [InlineData("type=tool.denied", new long[] { 5, 10 })]
    [InlineData("outcome=deny", new long[] { 5, 10 })]
    [InlineData("outcome=failed", new long[] { 7, 14 })]
    [InlineData("user=bob&tool=shell.exec", new long[] { 6, 12 })]
    [InlineData("after=12&outcome=deny", new long[] { })]
    public async Task Events_filter_by_user_tool_type_and_outcome(string query, long[] expected)
    {
        var tenant = "filters";
        if (await app.ScalarAsSuperuserAsync<long>($"SELECT count(*) FROM audit_events WHERE tenant_id = '{tenant}'") == 0)
        {
            await SeedAsync(tenant, 14);
        }

        using var client = Auditor(tenant);

        Assert.Equal(expected, Seqs(await JsonAsync(await client.GetAsync($"/v1/audit/events?{query}"))));
    }

    [Fact]
    public async Task Events_filter_by_time()
    {
        await SeedAsync("time", 3);
        var before = DateTimeOffset.UtcNow;
        await Task.Delay(20);
        await SeedAsync("time", 2);
        using var client = Auditor("time");

        var from = Uri.EscapeDataString(before.ToString("O"));
        var later = Seqs(await JsonAsync(await client.GetAsync($"/v1/audit/events?from={from}")));
        var earlier = Seqs(await JsonAsync(await client.GetAsync($"/v1/audit/events?to={from}")));
        Assert.Equal([4L, 5L], later);
        Assert.Equal([1L, 2L, 3L], earlier);
    }

    [Fact]
    public async Task Another_tenants_events_never_appear_in_events_export_or_verify()
    {
        await SeedAsync("isolated-a", 4);
        await SeedAsync("isolated-b", 9);
        using var client = Auditor("isolated-a");

        var events = await JsonAsync(await client.GetAsync("/v1/audit/events?limit=1000"));
        Assert.Equal([1L, 2L, 3L, 4L], Seqs(events));
        Assert.All(events.GetProperty("events").EnumerateArray(), e => Assert.Equal("isolated-a", e.GetProperty("tenant").GetString()));

        var export = await client.GetStringAsync("/v1/audit/export");
        var lines = export.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        Assert.All(lines, l => Assert.Contains("\"tenant\":\"isolated-a\"", l));

        var verify = await JsonAsync(await client.GetAsync("/v1/audit/verify"));
        Assert.True(verify.GetProperty("valid").GetBoolean());
        Assert.Equal(4, verify.GetProperty("checked").GetInt64());
        Assert.Equal(4, verify.GetProperty("headSeq").GetInt64());
        Assert.Equal(JsonValueKind.Null, verify.GetProperty("firstInvalidSeq").ValueKind);
    }

    [Fact]
    public async Task An_export_passes_the_verification_script_and_a_tampered_one_fails_it()
    {
        await SeedAsync("export", 30);
        using var client = Auditor("export");
        var response = await client.GetAsync("/v1/audit/export");
        var export = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, export);
        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
        var path = Path.Combine(app.DataRoot, "export.jsonl");
        await File.WriteAllTextAsync(path, export);

        var (ok, output) = await RunScriptAsync(path);
        Assert.True(ok, output);
        Assert.StartsWith("OK 30 events", output);

        var lines = export.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var edited = JsonNode.Parse(lines[11])!;
        edited["actor"]!["name"] = "Mallory";
        lines[11] = edited.ToJsonString();
        await File.WriteAllLinesAsync(path, lines);
        (ok, output) = await RunScriptAsync(path);
        Assert.False(ok);
        Assert.StartsWith("FAIL at seq 12", output);

        lines = export.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where((_, i) => i != 20).ToArray();
        await File.WriteAllLinesAsync(path, lines);
        (_, output) = await RunScriptAsync(path);
        Assert.StartsWith("FAIL at seq 21", output);

        var range = (await client.GetStringAsync("/v1/audit/export?from=5&to=7")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal([5L, 6L, 7L], range.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("seq").GetInt64()));
    }

    [Fact]
    public async Task Checkpoints_are_signed_with_the_published_key()
    {
        await SeedAsync("checkpoints", 3);
        using var client = Auditor("checkpoints");
        using var empty = Auditor("checkpoints-empty");

        Assert.Equal(HttpStatusCode.Conflict, (await empty.PostAsync("/v1/audit/checkpoints", null)).StatusCode);
        var created = await JsonAsync(await client.PostAsync("/v1/audit/checkpoints", null));
        var page = await JsonAsync(await client.GetAsync("/v1/audit/checkpoints"));

        var checkpoint = Assert.Single(page.GetProperty("checkpoints").EnumerateArray());
        Assert.Equal(3, checkpoint.GetProperty("seq").GetInt64());
        Assert.Equal(created.GetProperty("signature").GetString(), checkpoint.GetProperty("signature").GetString());
        var key = page.GetProperty("publicKey");
        Assert.Equal(checkpoint.GetProperty("keyId").GetString(), key.GetProperty("keyId").GetString());
        using var ecdsa = ECDsa.Create();
        ecdsa.ImportSubjectPublicKeyInfo(Convert.FromBase64String(key.GetProperty("spki").GetString()!), out _);
        var signed = Encoding.UTF8.GetBytes(
            $"{{\"at\":\"{checkpoint.GetProperty("at").GetString()}\",\"hash\":\"{checkpoint.GetProperty("hash").GetString()}\",\"seq\":3,\"tenant\":\"checkpoints\"}}");
        Assert.True(ecdsa.VerifyData(signed, Convert.FromBase64String(checkpoint.GetProperty("signature").GetString()!),
            HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));

        var verify = await JsonAsync(await client.GetAsync("/v1/audit/verify"));
        Assert.Equal(3, verify.GetProperty("checkpoint").GetProperty("seq").GetInt64());
    }

    private static async Task<(bool Ok, string Output)> RunScriptAsync(string export)
    {
        var start = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(HarnessApplication.RepositoryRoot, "scripts", "verify-audit-export.py"));
        start.ArgumentList.Add(export);
        using var process = Process.Start(start)!;
        var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode == 0, output);
    }
}
