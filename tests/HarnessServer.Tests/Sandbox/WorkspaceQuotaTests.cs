using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Sandbox;

/// <summary>
/// Issue 16: a call cannot leave its workspace over the disk quota (bytes and entries). Checked from inside the
/// sandbox through the real server: the call fails <c>workspace_quota_exceeded</c>, the excess is gone, what was there
/// before is intact, the next call works, other sessions are untouched and the call is still recorded as executed.
/// </summary>
public sealed class WorkspaceQuotaTests(QuotaApplication app) : IClassFixture<QuotaApplication>
{
    private const string Tenant = QuotaApplication.Tenant;

    private static async Task<Guid> NewSessionAsync(HttpClient client) =>
        (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

    private static async Task<JsonElement> CallAsync(HttpClient client, Guid session, string tool, object arguments) =>
        await (await client.PostAsync($"/v1/sessions/{session}/tool-calls",
            new StringContent(JsonSerializer.Serialize(new { tool, arguments }), Encoding.UTF8, "application/json"))).JsonAsync(HttpStatusCode.OK);

    private static Task<JsonElement> ShellAsync(HttpClient client, Guid session, string command, int timeoutSeconds = 30) =>
        CallAsync(client, session, "shell.exec", new { command, timeoutSeconds });

    private string WorkspaceOf(Guid session) => Path.Combine(app.DataRoot, "workspaces", Tenant, session.ToString());

    private static void AssertQuotaFailure(JsonElement call, string expected)
    {
        Assert.Equal("failed", call.GetProperty("status").GetString());
        var error = call.GetProperty("error");
        Assert.Equal("workspace_quota_exceeded", error.GetProperty("code").GetString());
        Assert.Contains(expected, error.GetProperty("message").GetString());
    }

    private async Task AssertExecutedWithQuotaErrorAsync(JsonElement call)
    {
        Assert.Equal(1, await app.CountAsync("""
            SELECT count(*) FROM audit_events
            WHERE tenant_id = $1 AND type = 'tool_call.executed' AND payload->>'callId' = $2
              AND payload->>'status' = 'failed' AND payload->'error'->>'code' = 'workspace_quota_exceeded'
              AND payload->'checkpoint'->>'treeHash' IS NOT NULL
            """, Tenant, call.GetProperty("id").GetGuid().ToString()));
    }

    [Fact]
    public async Task Quota_a_command_writing_past_the_byte_quota_is_stopped_failed_and_undone()
    {
        using var client = app.ClientFor("bytes", Tenant);
        var session = await NewSessionAsync(client);
        var neighbour = await NewSessionAsync(client);
        Assert.Equal("succeeded", (await CallAsync(client, session, "fs.write", new { path = "keep/notes.txt", content = "before the call\n" })).GetProperty("status").GetString());
        Assert.Equal("succeeded", (await ShellAsync(client, neighbour, "head -c 700000 /dev/zero > mine.bin")).GetProperty("status").GetString());

        // Every file is under MaxFileBytes, so only the quota can stop this loop before its 30 s time limit.
        var clock = Stopwatch.StartNew();
        var call = await ShellAsync(client, session, "i=0; while true; do i=$((i+1)); head -c 300000 /dev/zero > part$i.bin; done");
        clock.Stop();

        AssertQuotaFailure(call, $"bytes used of {QuotaApplication.MaxBytes} allowed");
        Assert.Contains("The call was stopped", call.GetProperty("error").GetProperty("message").GetString());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the loop ran for {clock.Elapsed}: it was not stopped at the quota");
        Assert.Empty(Directory.GetFiles(WorkspaceOf(session), "part*.bin"));
        Assert.Equal("before the call\n", (await CallAsync(client, session, "fs.read", new { path = "keep/notes.txt" })).GetProperty("result").GetProperty("content").GetString());
        await AssertExecutedWithQuotaErrorAsync(call);

        var next = await ShellAsync(client, session, "cat keep/notes.txt && ls");
        Assert.Equal("succeeded", next.GetProperty("status").GetString());
        Assert.Equal("before the call\nkeep\n", next.GetProperty("result").GetProperty("stdout").GetString());
        // Another session's workspace has its own quota and kept its file.
        Assert.Equal(700_000, new FileInfo(Path.Combine(WorkspaceOf(neighbour), "mine.bin")).Length);
        Assert.Equal("succeeded", (await ShellAsync(client, neighbour, "head -c 300000 /dev/zero > more.bin")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Quota_a_command_that_ends_over_the_byte_quota_fails_and_its_files_are_removed()
    {
        using var client = app.ClientFor("bytes-after", Tenant);
        var session = await NewSessionAsync(client);
        Assert.Equal("succeeded", (await ShellAsync(client, session, "mkdir old && head -c 1000 /dev/zero > old/kept.bin")).GetProperty("status").GetString());

        var call = await ShellAsync(client, session, "for i in 1 2 3 4; do dd if=/dev/zero of=old/f$i.bin bs=100000 count=3 2>/dev/null; done; echo written");

        AssertQuotaFailure(call, $"bytes used of {QuotaApplication.MaxBytes} allowed");
        Assert.Equal(["kept.bin"], Directory.GetFiles(Path.Combine(WorkspaceOf(session), "old")).Select(Path.GetFileName));
        Assert.Equal(1000, new FileInfo(Path.Combine(WorkspaceOf(session), "old", "kept.bin")).Length);
        await AssertExecutedWithQuotaErrorAsync(call);
        Assert.Equal("succeeded", (await ShellAsync(client, session, "head -c 500000 /dev/zero > old/fits.bin")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Quota_many_small_files_past_the_entries_quota_fail_and_are_removed()
    {
        using var client = app.ClientFor("entries", Tenant);
        var session = await NewSessionAsync(client);
        Assert.Equal("succeeded", (await CallAsync(client, session, "fs.write", new { path = "a.txt", content = "a" })).GetProperty("status").GetString());

        var call = await ShellAsync(client, session, "mkdir many && cd many && for i in $(seq 1 300); do : > f$i; done");

        AssertQuotaFailure(call, $"entries used of {QuotaApplication.MaxEntries} allowed");
        Assert.Equal(["a.txt"], Directory.GetFileSystemEntries(WorkspaceOf(session)).Select(Path.GetFileName));
        await AssertExecutedWithQuotaErrorAsync(call);
        Assert.Equal("succeeded", (await ShellAsync(client, session, "mkdir few && touch few/1 few/2")).GetProperty("status").GetString());
    }

    // Deeper than a checkpoint looks would be dropped by any restore and never counted: the quota refuses it.
    [Fact]
    public async Task Quota_folders_nested_deeper_than_checkpoints_look_fail_and_are_removed()
    {
        using var client = app.ClientFor("deep", Tenant);
        var session = await NewSessionAsync(client);

        var call = await ShellAsync(client, session, "mkdir -p $(printf 'd/%.0s' $(seq 1 70)) && head -c 100 /dev/zero > $(printf 'd/%.0s' $(seq 1 70))x");

        AssertQuotaFailure(call, "folders nested deeper");
        Assert.Empty(Directory.GetFileSystemEntries(WorkspaceOf(session)));
    }

    [Fact]
    public async Task Quota_fs_write_over_the_quota_is_refused_before_anything_is_written()
    {
        using var client = app.ClientFor("writes", Tenant);
        var session = await NewSessionAsync(client);
        var big = new string('x', 600_000);
        Assert.Equal("succeeded", (await CallAsync(client, session, "fs.write", new { path = "a.txt", content = big })).GetProperty("status").GetString());

        var refused = await CallAsync(client, session, "fs.write", new { path = "b.txt", content = big });
        // Replacing a file counts the old one out: the same size again fits.
        var replaced = await CallAsync(client, session, "fs.write", new { path = "a.txt", content = big + "y" });

        AssertQuotaFailure(refused, $"1200000 bytes used of {QuotaApplication.MaxBytes} allowed");
        Assert.Contains("nothing was written", refused.GetProperty("error").GetProperty("message").GetString());
        Assert.False(File.Exists(Path.Combine(WorkspaceOf(session), "b.txt")));
        await AssertExecutedWithQuotaErrorAsync(refused);
        Assert.Equal("succeeded", replaced.GetProperty("status").GetString());
        Assert.Equal(600_001, new FileInfo(Path.Combine(WorkspaceOf(session), "a.txt")).Length);
    }

    [Fact]
    public async Task Quota_a_workspace_already_over_its_quota_may_still_shrink()
    {
        using var client = app.ClientFor("shrink", Tenant);
        var session = await NewSessionAsync(client);
        await CallAsync(client, session, "fs.list", new { path = "." });
        // Put there from outside (as a lowered quota would leave it).
        for (var i = 0; i < 4; i++)
        {
            await File.WriteAllBytesAsync(Path.Combine(WorkspaceOf(session), $"old{i}.bin"), new byte[400_000]);
        }

        var shrunk = await ShellAsync(client, session, "rm old0.bin");
        var grown = await ShellAsync(client, session, "head -c 10 /dev/zero > new.bin");

        Assert.Equal("succeeded", shrunk.GetProperty("status").GetString());
        AssertQuotaFailure(grown, $"1200010 bytes used of {QuotaApplication.MaxBytes} allowed");
        Assert.False(File.Exists(Path.Combine(WorkspaceOf(session), "new.bin")));
        Assert.True(File.Exists(Path.Combine(WorkspaceOf(session), "old1.bin")));
    }

    [Fact]
    public async Task Quota_readyz_says_which_enforcement_is_in_force()
    {
        using var client = app.CreateClient();

        var body = await (await client.GetAsync("/readyz")).Content.ReadFromJsonAsync<JsonElement>();

        Assert.Contains($"workspace quota: checked ceiling of {QuotaApplication.MaxBytes} bytes and {QuotaApplication.MaxEntries} entries per workspace",
            body.GetProperty("checks").GetProperty("sandbox").GetProperty("description").GetString());
    }
}

/// <summary>A server with a small workspace quota (1 MB, 200 entries) and files capped below it, so the tests are fast.</summary>
public sealed class QuotaApplication : HarnessApplication
{
    public const string Tenant = "quota";
    public const long MaxBytes = 1_000_000;
    public const long MaxEntries = 200;

    private const string OrgPolicy = """
        default: deny
        rules:
          - tool: "fs.*"
            effect: allow
          - tool: "shell.exec"
            effect: allow
        """;

    protected override void Configure(IDictionary<string, string?> settings)
    {
        settings["Harness:Sandbox:WorkspaceMaxBytes"] = $"{MaxBytes}";
        settings["Harness:Sandbox:WorkspaceMaxFiles"] = $"{MaxEntries}";
        settings["Harness:Sandbox:MaxFileBytes"] = "800000";
    }

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        using var admin = ClientFor("admin", Tenant, roles: [HarnessRoles.Admin]);
        var put = await admin.PutAsync("/v1/admin/policies/org", new StringContent(OrgPolicy, Encoding.UTF8, "application/yaml"));
        put.EnsureSuccessStatusCode();
    }
}
