using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Identity;
using Microsoft.Playwright;

namespace HarnessServer.Tests.WebConsole;

/// <summary>
/// The security reviewer's search, one event's record, the JSON Lines export and the signed checkpoints, on a chain
/// of 130 events written through the real chain writer in a tenant no other test writes to.
/// </summary>
[Collection(ConsoleCollection.Name)]
public sealed class ConsoleReviewTests(ConsoleApplication app)
{
    private const string Tenant = ConsoleApplication.SearchTenant;
    private static readonly SemaphoreSlim Seeding = new(1, 1);
    private static bool _seeded;

    // 130 events: users u0..u2 in turn, every fourth a shell.exec, every seventh denied.
    private static string UserOf(int i) => $"u{i % 3}";
    private static string ToolOf(int i) => i % 4 == 0 ? "shell.exec" : "fs.read";
    private static string EffectOf(int i) => i % 7 == 0 ? "deny" : "allow";

    private async Task SeedAsync()
    {
        await Seeding.WaitAsync();
        try
        {
            if (!_seeded)
            {
                var entries = Enumerable.Range(1, 130).Select(i => new AuditEntry("tool.executed", new AuditActor(UserOf(i), $"User {UserOf(i)}"),
                    Tool: ToolOf(i),
                    Decision: new JsonObject { ["effect"] = EffectOf(i), ["level"] = "org", ["source"] = "org.yaml", ["reason"] = null },
                    Payload: new JsonObject { ["i"] = i, ["status"] = EffectOf(i) == "deny" ? "denied" : "succeeded" })).ToList();
                await app.Service<AuditChain>().AppendAsync(Tenant, entries, default);
                _seeded = true;
            }
        }
        finally
        {
            Seeding.Release();
        }
    }

    private static ILocatorAssertions Expect(ILocator locator) => Assertions.Expect(locator);

    private static async Task<List<long>> SeqsAsync(IPage page) =>
        [.. (await page.GetByTestId("event").EvaluateAllAsync<string[]>("rows => rows.map(r => r.dataset.seq)")).Select(long.Parse)];

    [Fact]
    public async Task A_reviewer_filters_by_user_tool_and_outcome_and_pages_through_the_matches()
    {
        await SeedAsync();
        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "sam", "/console/audit");
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (long)i), await SeqsAsync(page));

        await page.GetByLabel("Tool", new() { Exact = true }).FillAsync("fs.read");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await page.WaitForURLAsync(url => url.Contains("tool=fs.read", StringComparison.Ordinal));
        var expected = Enumerable.Range(1, 130).Where(i => ToolOf(i) == "fs.read").Select(i => (long)i).ToList();
        Assert.True(expected.Count > 50);
        Assert.Equal(expected.Take(50), await SeqsAsync(page));
        await ConsoleStoryTests.AssertAccessibleAsync(page, "audit-filtered");

        // The next page keeps the filters and goes on after the last seq shown: no repeats, nothing skipped.
        await page.GetByTestId("next-page").ClickAsync();
        await page.WaitForURLAsync(url => url.Contains("after=", StringComparison.Ordinal));
        Assert.Equal(expected.Skip(50), await SeqsAsync(page));
        await Expect(page.GetByTestId("next-page")).ToHaveCountAsync(0);

        await page.GotoAsync("/console/audit?user=u1&tool=shell.exec");
        Assert.Equal(Enumerable.Range(1, 130).Where(i => UserOf(i) == "u1" && ToolOf(i) == "shell.exec").Select(i => (long)i), await SeqsAsync(page));
        await page.GotoAsync("/console/audit?outcome=deny");
        Assert.Equal(Enumerable.Range(1, 130).Where(i => EffectOf(i) == "deny").Select(i => (long)i), await SeqsAsync(page));

        // A time range after the last event matches nothing; a time that is not one is said, not a 500.
        var future = DateTime.UtcNow.AddDays(1).ToString("yyyy-MM-dd'T'HH:mm", System.Globalization.CultureInfo.InvariantCulture);
        await page.GotoAsync($"/console/audit?from={future}");
        await Expect(page.GetByTestId("no-events")).ToBeVisibleAsync();
        var bad = await page.GotoAsync("/console/audit?to=yesterday");
        Assert.Equal(200, bad!.Status);
        await Expect(page.GetByTestId("filter-error")).ToContainTextAsync("'yesterday' is not a time");
        ConsoleStoryTests.NoConsoleErrors(errors);
    }

    [Fact]
    public async Task The_export_downloads_the_api_exports_lines_for_the_filtered_events()
    {
        await SeedAsync();
        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "sam", "/console/audit");
        await page.GotoAsync("/console/audit?user=u2&outcome=deny");

        var download = await page.RunAndWaitForDownloadAsync(() => page.GetByTestId("export").ClickAsync());
        Assert.EndsWith("-filtered.jsonl", download.SuggestedFilename, StringComparison.Ordinal);
        var lines = (await File.ReadAllLinesAsync((await download.PathAsync())!)).Where(l => l.Length > 0).ToList();

        using var api = app.Api("sam", [HarnessRoles.Auditor], ["security"], Tenant);
        var whole = (await api.GetStringAsync("/v1/audit/export")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var expected = whole.Where(line =>
        {
            var e = JsonDocument.Parse(line).RootElement;
            return e.GetProperty("actor").GetProperty("id").GetString() == "u2" && e.GetProperty("decision").GetProperty("effect").GetString() == "deny";
        }).ToList();
        Assert.NotEmpty(expected);
        Assert.Equal(expected, lines);

        // A filter that is not one is a problem, not a half-written file.
        var refused = await context.APIRequest.GetAsync("/console/audit/export?from=soon");
        Assert.Equal((int)HttpStatusCode.BadRequest, refused.Status);
        Assert.StartsWith("application/problem+json", refused.Headers["content-type"], StringComparison.Ordinal);
        Assert.Contains("invalid_filter", await refused.TextAsync(), StringComparison.Ordinal);
        ConsoleStoryTests.NoConsoleErrors(errors);
    }

    [Fact]
    public async Task One_events_record_shows_its_hash_links_and_leads_to_its_neighbours()
    {
        await SeedAsync();
        using var api = app.Api("sam", [HarnessRoles.Auditor], ["security"], Tenant);
        var events = JsonDocument.Parse(await api.GetStringAsync("/v1/audit/events?after=40&limit=3")).RootElement.GetProperty("events");
        var (previous, event42) = (events[0], events[1]);

        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "sam", "/console/audit");
        await page.GetByRole(AriaRole.Link, new() { Name = "Event 42", Exact = true }).ClickAsync();
        await page.WaitForURLAsync(url => url.EndsWith("/console/audit/events/42", StringComparison.Ordinal));
        await Expect(page.GetByTestId("hash")).ToContainTextAsync(event42.GetProperty("hash").GetString()!);
        await Expect(page.GetByTestId("prev-hash")).ToContainTextAsync(previous.GetProperty("hash").GetString()!);
        await Expect(page.GetByTestId("prev-hash")).ToContainTextAsync("✓ matches hash of seq 41");
        await Expect(page.GetByTestId("event-check")).ToContainTextAsync("This event is intact");
        await Expect(page.GetByTestId("payload")).ToContainTextAsync("\"i\": 42");
        await ConsoleStoryTests.AssertAccessibleAsync(page, "audit-event");

        await page.GetByTestId("next-event").ClickAsync();
        await Expect(page.GetByTestId("seq")).ToHaveTextAsync("43");
        await page.GetByTestId("previous-event").ClickAsync();
        await page.GetByTestId("previous-event").ClickAsync();
        await Expect(page.GetByTestId("seq")).ToHaveTextAsync("41");

        ConsoleStoryTests.NoConsoleErrors(errors);

        // A seq the chain does not have is a 404 problem (which the browser logs as an error, so checked after).
        var missing = await page.GotoAsync("/console/audit/events/999999");
        Assert.Equal(404, missing!.Status);
        Assert.Contains("\"status\":404", await missing.TextAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_reviewer_signs_a_checkpoint_verifies_against_it_and_a_forged_one_fails()
    {
        await SeedAsync();
        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "sam", "/console/audit/checkpoints");
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign a checkpoint of the head now" }).ClickAsync();
        await Expect(page.GetByTestId("signed")).ToContainTextAsync("Signed the head at seq");
        var row = page.GetByTestId("checkpoint").Last;
        await Expect(row.GetByTestId("authentic")).ToHaveTextAsync("✓ authentic");
        var seq = await row.GetAttributeAsync("data-seq");

        // The form holds the newest checkpoint's line: verifying against it passes.
        await page.GetByRole(AriaRole.Button, new() { Name = "Verify against this checkpoint" }).ClickAsync();
        await Expect(page.GetByTestId("verification")).ToContainTextAsync($"agrees with the checkpoint at seq {seq}");
        await ConsoleStoryTests.AssertAccessibleAsync(page, "audit-checkpoints");

        // The same line with another hash (its signature no longer covers it) is named at its seq.
        var line = JsonNode.Parse(await page.GetByLabel("A checkpoint as JSON", new() { Exact = false }).InputValueAsync())!;
        line["hash"] = new string('a', 64);
        await page.GetByLabel("A checkpoint as JSON", new() { Exact = false }).FillAsync(line.ToJsonString());
        await page.GetByRole(AriaRole.Button, new() { Name = "Verify against this checkpoint" }).ClickAsync();
        await Expect(page.GetByTestId("first-broken")).ToHaveTextAsync(seq!);
        await Expect(page.GetByTestId("verification")).ToContainTextAsync("not signed by this server's key");

        await page.GetByLabel("A checkpoint as JSON", new() { Exact = false }).FillAsync("{not json");
        await page.GetByRole(AriaRole.Button, new() { Name = "Verify against this checkpoint" }).ClickAsync();
        await Expect(page.GetByTestId("anchor-error")).ToContainTextAsync("not a signed checkpoint");
        ConsoleStoryTests.NoConsoleErrors(errors);
    }

    [Fact]
    public async Task The_reviewer_pages_fit_a_phone_without_sideways_scrolling()
    {
        await SeedAsync();
        var (context, page, errors) = await app.NewPageAsync(390, 844);
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "sam", "/console/audit");
        foreach (var (path, name) in new[] { ("/console/audit", "audit-phone"), ("/console/audit/events/42", "audit-event-phone"), ("/console/audit/checkpoints", "audit-checkpoints-phone") })
        {
            await page.GotoAsync(path);
            await ConsoleMemberTests.AssertNoSidewaysScrollAsync(page);
            await ConsoleStoryTests.AssertAccessibleAsync(page, name);
        }

        ConsoleStoryTests.NoConsoleErrors(errors);
    }
}
