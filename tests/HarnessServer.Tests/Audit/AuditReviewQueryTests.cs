using System.Text;
using System.Text.Json;
using HarnessServer.Audit;
using HarnessServer.Tests.Infrastructure;
using static HarnessServer.Tests.Audit.AuditTestData;

namespace HarnessServer.Tests.Audit;

/// <summary>What the reviewer's console pages ask of the audit services: a filtered export, one event checked where it stands.</summary>
public sealed class AuditReviewQueryTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private async Task<string> SeedAsync(string tenant)
    {
        // 30 events: users u0..u2 in turn, every third a shell.exec, every fifth denied.
        var entries = Enumerable.Range(1, 30)
            .Select(i => Entry(i, type: i % 4 == 0 ? "policy.changed" : "tool.executed", tool: i % 3 == 0 ? "shell.exec" : "fs.read",
                effect: i % 5 == 0 ? "deny" : "allow", user: $"u{i % 3}"))
            .ToList();
        await app.Service<AuditChain>().AppendAsync(tenant, entries, default);
        return tenant;
    }

    private async Task<List<string>> ExportAsync(string tenant, AuditEventFilter filter)
    {
        using var output = new MemoryStream();
        await app.Service<AuditExport>().WriteAsync(tenant, 1, long.MaxValue, filter, output, default);
        return Encoding.UTF8.GetString(output.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
    }

    [Theory]
    [InlineData("u1", null, null, null)]
    [InlineData(null, "shell.exec", null, null)]
    [InlineData(null, null, "policy.changed", null)]
    [InlineData(null, null, null, "deny")]
    [InlineData("u0", "shell.exec", null, "deny")]
    public async Task A_filtered_export_is_the_whole_exports_lines_that_match(string? user, string? tool, string? type, string? outcome)
    {
        var tenant = await SeedAsync($"export-{user}-{tool}-{type}-{outcome}");

        var whole = await ExportAsync(tenant, AuditEventFilter.None);
        var filtered = await ExportAsync(tenant, new AuditEventFilter(user, tool, type, outcome));

        Assert.Equal(30, whole.Count);
        var expected = whole.Where(line =>
        {
            var e = JsonDocument.Parse(line).RootElement;
            return (user is null || e.GetProperty("actor").GetProperty("id").GetString() == user)
                && (tool is null || e.GetProperty("tool").GetString() == tool)
                && (type is null || e.GetProperty("type").GetString() == type)
                && (outcome is null || e.GetProperty("decision").GetProperty("effect").GetString() == outcome
                    || e.GetProperty("payload").GetProperty("status").GetString() == outcome);
        }).ToList();
        Assert.NotEmpty(expected);
        Assert.True(expected.Count < whole.Count);
        Assert.Equal(expected, filtered);
    }

    [Fact]
    public async Task A_time_range_bounds_the_export_and_the_page_query_alike()
    {
        var tenant = await SeedAsync("export-time");
        var whole = await ExportAsync(tenant, AuditEventFilter.None);
        var at = DateTimeOffset.Parse(JsonDocument.Parse(whole[0]).RootElement.GetProperty("at").GetString()!, System.Globalization.CultureInfo.InvariantCulture);

        Assert.Empty(await ExportAsync(tenant, new AuditEventFilter(From: at.AddMinutes(1))));
        Assert.Empty(await ExportAsync(tenant, new AuditEventFilter(To: at.AddMinutes(-1))));
        Assert.Equal(whole, await ExportAsync(tenant, new AuditEventFilter(From: at.AddSeconds(-1), To: at.AddMinutes(1))));

        await using var db = app.Service<HarnessServer.Data.TenantDbContextFactory>().Create(tenant);
        var (page, next) = await AuditQuery.PageAsync(db, new AuditEventFilter(User: "u1", From: at.AddSeconds(-1)), 0, 4, default);
        Assert.Equal([1L, 4, 7, 10], page.Select(e => e.Seq));
        Assert.Equal(10, next);
        var (rest, end) = await AuditQuery.PageAsync(db, new AuditEventFilter(User: "u1"), next!.Value, 100, default);
        Assert.Equal([13L, 16, 19, 22, 25, 28], rest.Select(e => e.Seq));
        Assert.Null(end);
    }

    [Fact]
    public async Task One_event_checks_its_own_hash_and_its_links_either_side()
    {
        var tenant = await SeedAsync("event-check");
        var verifier = app.Service<AuditVerifier>();

        var first = await verifier.CheckEventAsync(tenant, 1, default);
        Assert.True(first!.Intact);
        Assert.False(first.HasPrevious);
        Assert.True(first.HasNext);
        var last = await verifier.CheckEventAsync(tenant, 30, default);
        Assert.True(last!.Intact);
        Assert.Null(last.LinkedFromNext);
        Assert.Null(await verifier.CheckEventAsync(tenant, 31, default));

        await TamperAsync(app, $"UPDATE audit_events SET actor_name = 'Mallory' WHERE tenant_id = '{tenant}' AND seq = 7");
        var edited = await verifier.CheckEventAsync(tenant, 7, default);
        Assert.False(edited!.HashMatches);
        Assert.False(edited.Intact);
        Assert.True((await verifier.CheckEventAsync(tenant, 8, default))!.Intact);

        await TamperAsync(app, $"UPDATE audit_events SET hash = repeat('b', 64) WHERE tenant_id = '{tenant}' AND seq = 12");
        Assert.False((await verifier.CheckEventAsync(tenant, 12, default))!.HashMatches);
        var after = await verifier.CheckEventAsync(tenant, 13, default);
        Assert.True(after!.HashMatches);
        Assert.False(after.LinkedToPrevious);
        // Seq 12 still names seq 11's hash as its previous one: the break is at 12, not before it.
        Assert.True((await verifier.CheckEventAsync(tenant, 11, default))!.LinkedFromNext);

        await TamperAsync(app, $"UPDATE audit_events SET payload = jsonb_set(payload::jsonb, '{{status}}', '\"failed\"')::json WHERE tenant_id = '{tenant}' AND seq = 20");
        var payload = await verifier.CheckEventAsync(tenant, 20, default);
        Assert.True(payload!.HashMatches);
        Assert.False(payload.PayloadMatches);

        await TamperAsync(app, $"DELETE FROM audit_events WHERE tenant_id = '{tenant}' AND seq = 24");
        var orphan = await verifier.CheckEventAsync(tenant, 25, default);
        Assert.False(orphan!.HasPrevious);
        Assert.False(orphan.LinkedToPrevious);
    }
}
