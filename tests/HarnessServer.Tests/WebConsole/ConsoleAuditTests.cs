using Microsoft.Playwright;

namespace HarnessServer.Tests.WebConsole;

/// <summary>The security reviewer's story: the chain verifies, a superuser edits a row in SQL, verify names that row.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class ConsoleAuditTests(ConsoleApplication app)
{
    [Fact]
    public async Task A_reviewer_verifies_the_chain_then_sees_the_first_seq_a_superuser_edited()
    {
        // A few events in the reviewer's tenant: sessions created over the API.
        using var member = app.Api("ravi", tenant: ConsoleApplication.ReviewTenant);
        for (var i = 0; i < 4; i++)
        {
            (await member.PostAsync("/v1/sessions", null)).EnsureSuccessStatusCode();
        }

        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "rita", "/console/audit");
        await Assertions.Expect(page.GetByTestId("event")).ToHaveCountAsync(4);
        await page.GetByRole(AriaRole.Button, new() { Name = "Verify the chain" }).ClickAsync();
        await Assertions.Expect(page.GetByTestId("verification")).ToContainTextAsync("The chain is intact: 4 events checked, head seq 4");
        await ConsoleStoryTests.AssertAccessibleAsync(page, "audit-valid");

        await app.ExecuteAsSuperuserAsync(
            $"SET session_replication_role = replica; UPDATE audit_events SET actor_name = 'Mallory' WHERE tenant_id = '{ConsoleApplication.ReviewTenant}' AND seq = 3");

        await page.GetByRole(AriaRole.Button, new() { Name = "Verify the chain" }).ClickAsync();
        await Assertions.Expect(page.GetByTestId("first-broken")).ToHaveTextAsync("3");
        await Assertions.Expect(page.GetByTestId("verification")).ToContainTextAsync("2 events before it are intact");
        var row = page.Locator("[data-testid=event][data-seq='3']");
        await Assertions.Expect(row).ToHaveClassAsync("broken");
        await Assertions.Expect(row).ToContainTextAsync("first broken");
        Assert.Equal(1, await page.Locator("tr.broken").CountAsync());
        await ConsoleStoryTests.AssertAccessibleAsync(page, "audit-broken");

        // The first broken seq leads to that event's record, which says what does not hold; its neighbour still links.
        await page.GetByTestId("first-broken").ClickAsync();
        await page.WaitForURLAsync(url => url.EndsWith("/console/audit/events/3", StringComparison.Ordinal));
        await Assertions.Expect(page.GetByTestId("event-check")).ToContainTextAsync("its stored hash is not the hash of its fields");
        await Assertions.Expect(page.GetByTestId("event-record")).ToContainTextAsync("Mallory");
        await Assertions.Expect(page.GetByTestId("hash").GetByTestId("check")).ToHaveTextAsync("✗ does not match recomputed");
        await ConsoleStoryTests.AssertAccessibleAsync(page, "audit-event-broken");
        await page.GetByTestId("next-event").ClickAsync();
        await Assertions.Expect(page.GetByTestId("event-check")).ToContainTextAsync("This event is intact");
        ConsoleStoryTests.NoConsoleErrors(errors);
    }

    [Fact]
    public async Task A_member_cannot_open_the_audit_trail()
    {
        var (context, page, _) = await app.NewPageAsync();
        await using var __ = context;
        await ConsoleApplication.SignInAsync(page, "alice");
        await page.GotoAsync("/console/audit");
        Assert.Equal("/console/denied", new Uri(page.Url).AbsolutePath);
    }
}
