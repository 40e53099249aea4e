using System.Net;
using System.Net.Http.Json;
using System.Text;
using HarnessServer.Sessions;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Agents;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class CheckpointCollectionTests(CheckpointCollectionTests.RetentionApplication app) : IClassFixture<CheckpointCollectionTests.RetentionApplication>
{
    private const string Tenant = "collect";

    /// <summary>Sessions keep their two newest checkpoints; the timed pass never runs during a test.</summary>
    public sealed class RetentionApplication : HarnessApplication
    {
        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["Harness:Checkpoints:KeepPerSession"] = "2";
            settings["Harness:Checkpoints:CollectInterval"] = "01:00:00";
        }
    }

    [Fact]
    public async Task Pruned_checkpoints_are_audited_their_blobs_collected_and_the_kept_ones_still_roll_back_exactly()
    {
        using var admin = app.ClientFor("root", Tenant, roles: ["harness.admin"]);
        (await admin.PutAsync("/v1/admin/policies/org", new StringContent("rules:\n  - tool: 'fs.*'\n    effect: allow\n", Encoding.UTF8, "application/yaml")))
            .EnsureSuccessStatusCode();
        using var client = app.ClientFor("cora", Tenant);
        var session = (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
        string[] versions = ["one", "two, only ever in the pruned checkpoint's successor", "three", "four"];
        foreach (var content in versions)
        {
            await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.write", arguments = new { path = "notes.txt", content } }))
                .JsonAsync(HttpStatusCode.OK);
        }

        // Four writes, four checkpoints: before "one" (empty), before "two" ("one"), before "three", before "four".
        var all = (await (await client.GetAsync($"/v1/sessions/{session}/checkpoints")).JsonAsync(HttpStatusCode.OK))
            .EnumerateArray().OrderBy(c => c.GetProperty("createdAt").GetDateTimeOffset()).Select(c => c.GetProperty("id").GetGuid()).ToList();
        Assert.Equal(4, all.Count);

        var collected = await app.Service<CheckpointCollector>().CollectAsync(Tenant, DateTimeOffset.UtcNow.AddHours(2), default);

        var kept = (await (await client.GetAsync($"/v1/sessions/{session}/checkpoints")).JsonAsync(HttpStatusCode.OK))
            .EnumerateArray().Select(c => c.GetProperty("id").GetGuid()).Order().ToList();
        Assert.Equal(all[2..].Order(), kept);
        Assert.True(collected.Deleted > 0);
        Assert.Equal(1, await app.CountAsync(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = 'workspace.checkpoints_pruned'", Tenant));

        await (await client.PostAsJsonAsync($"/v1/sessions/{session}/rollback", new { checkpoint = all[0] }))
            .ProblemAsync(HttpStatusCode.NotFound, "checkpoint_not_found");
        await (await client.PostAsJsonAsync($"/v1/sessions/{session}/rollback", new { checkpoint = all[2] })).JsonAsync(HttpStatusCode.OK);
        var read = await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.read", arguments = new { path = "notes.txt" } }))
            .JsonAsync(HttpStatusCode.OK);
        Assert.Equal(versions[1], read.GetProperty("result").GetProperty("content").GetString());

        // Nothing more is old enough: a second pass writes no second event and removes nothing a kept checkpoint needs.
        var again = await app.Service<CheckpointCollector>().CollectAsync(Tenant, DateTimeOffset.UtcNow.AddHours(2), default);
        Assert.Equal(0, again.Deleted);
        Assert.Equal(1, await app.CountAsync(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = 'workspace.checkpoints_pruned'", Tenant));
    }
}
