using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using HarnessServer.Sandbox;
using Microsoft.Playwright;
using static HarnessServer.Tests.WebConsole.ConsoleStoryTests;

namespace HarnessServer.Tests.WebConsole;

/// <summary>A member's own permission matrix with its explanations, and a rollback that shows what it will change first.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class ConsoleMemberTests(ConsoleApplication app)
{
    private static ILocatorAssertions Expect(ILocator locator) => Assertions.Expect(locator);

    /// <summary>The page is no wider than the window: nothing needs scrolling sideways.</summary>
    internal static async Task AssertNoSidewaysScrollAsync(IPage page)
    {
        var (scroll, client) = (await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth"),
            await page.EvaluateAsync<int>("() => document.documentElement.clientWidth"));
        Assert.True(scroll <= client, $"{page.Url} is {scroll}px wide in a {client}px window");
    }

    [Fact]
    public async Task A_member_sees_the_matrix_the_api_answers_with_its_rules_and_explains_a_call()
    {
        using var api = app.Api("alice");
        var matrix = JsonDocument.Parse(await api.GetStringAsync("/v1/me/permissions")).RootElement.GetProperty("tools");

        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "alice", "/console/matrix");
        await Expect(page.GetByTestId("tool")).ToHaveCountAsync(matrix.GetArrayLength());
        foreach (var tool in matrix.EnumerateArray())
        {
            var row = page.Locator($"[data-testid=tool][data-tool='{tool.GetProperty("tool").GetString()}']");
            await Expect(row.GetByTestId("effect")).ToHaveTextAsync(tool.GetProperty("effect").GetString()!);
            await Expect(row.GetByTestId("rule")).ToHaveCountAsync(tool.GetProperty("rules").GetArrayLength());
        }

        var write = page.Locator("[data-testid=tool][data-tool='fs.write']");
        await Expect(write.GetByTestId("rule")).ToContainTextAsync("ask");
        await Expect(write.GetByTestId("rule")).ToContainTextAsync("writes are reviewed by the team");
        await AssertAccessibleAsync(page, "matrix");

        await page.GetByLabel("Tool", new() { Exact = true }).SelectOptionAsync("fs.write");
        await page.GetByLabel("Arguments (a JSON object)").FillAsync("""{"path": "notes/a.txt", "content": "x"}""");
        await page.GetByRole(AriaRole.Button, new() { Name = "Explain" }).ClickAsync();
        await Expect(page.GetByTestId("explanation")).ToContainTextAsync("ask by org rule");
        await Expect(page.GetByTestId("explanation")).ToContainTextAsync("writes are reviewed by the team");

        await page.GetByLabel("Tool", new() { Exact = true }).SelectOptionAsync("shell.exec");
        await page.GetByLabel("Arguments (a JSON object)").FillAsync("""{"command": "rm -rf /"}""");
        await page.GetByRole(AriaRole.Button, new() { Name = "Explain" }).ClickAsync();
        await Expect(page.GetByTestId("explanation")).ToContainTextAsync("deny");

        await page.GetByLabel("Arguments (a JSON object)").FillAsync("[1, 2]");
        await page.GetByRole(AriaRole.Button, new() { Name = "Explain" }).ClickAsync();
        await Expect(page.GetByTestId("explain-error")).ToContainTextAsync("must be a JSON object");
        NoConsoleErrors(errors);
    }

    [Fact]
    public async Task A_member_previews_a_rollback_then_confirms_it_and_the_workspace_is_the_checkpoints()
    {
        using var api = app.Api("alice");
        var session = (await (await api.PostAsync("/v1/sessions", null)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();
        var user = await app.Service<TenantSandboxUsers>().OfAsync(ConsoleApplication.Tenant, default);
        var root = app.Service<WorkspaceRoot>();
        string folder;
        using (var workspace = root.Open(ConsoleApplication.Tenant, session.ToString(), user))
        {
            workspace.Write("keep.txt", "v1");
            workspace.Write("gone.txt", "deleted later");
            folder = workspace.FullPath;
        }

        // An allowed shell call: the checkpoint is taken just before it.
        var call = await api.PostAsync($"/v1/sessions/{session}/tool-calls", JsonContent(new { tool = "shell.exec", arguments = new { command = "echo hi" } }));
        Assert.Equal(HttpStatusCode.OK, call.StatusCode);
        using (var workspace = root.Open(ConsoleApplication.Tenant, session.ToString(), user))
        {
            workspace.Write("keep.txt", "v2");
            workspace.Write("added/new.txt", "new");
        }

        File.Delete(Path.Combine(folder, "gone.txt"));

        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "alice", $"/console/sessions/{session}");
        await page.GetByTestId("rollback-link").ClickAsync();
        await Expect(page.GetByTestId("checkpoint")).ToHaveCountAsync(1);
        await page.GetByTestId("choose").ClickAsync();
        var preview = page.GetByTestId("preview");
        await Expect(preview.GetByTestId("changed")).ToHaveTextAsync("keep.txt");
        await Expect(preview.GetByTestId("restored")).ToHaveTextAsync("gone.txt");
        await Expect(preview.GetByTestId("removed")).ToContainTextAsync("added/new.txt");
        await AssertAccessibleAsync(page, "rollback-preview");

        // Nothing changed yet: the preview only looked.
        using (var workspace = root.Open(ConsoleApplication.Tenant, session.ToString(), user))
        {
            Assert.Equal("v2", workspace.Read("keep.txt").Content);
        }

        await page.GetByRole(AriaRole.Button, new() { Name = "Roll back to this checkpoint" }).ClickAsync();
        await Expect(page.GetByTestId("rolled-back")).ToContainTextAsync("Rolled back to the checkpoint before shell.exec");
        using (var workspace = root.Open(ConsoleApplication.Tenant, session.ToString(), user))
        {
            Assert.Equal("v1", workspace.Read("keep.txt").Content);
            Assert.Equal("deleted later", workspace.Read("gone.txt").Content);
        }

        Assert.False(Directory.Exists(Path.Combine(folder, "added")));
        await page.GetByTestId("choose").ClickAsync();
        await Expect(page.GetByTestId("no-change")).ToBeVisibleAsync();
        NoConsoleErrors(errors);

        // Another member of the tenant cannot preview or roll back alice's session.
        var (other, otherPage, _) = await app.NewPageAsync();
        await using var __ = other;
        await ConsoleApplication.SignInAsync(otherPage, "bob");
        var refused = await otherPage.GotoAsync($"/console/sessions/{session}/rollback");
        Assert.Equal(404, refused!.Status);
    }

    [Fact]
    public async Task The_member_pages_fit_a_phone_without_sideways_scrolling()
    {
        var (context, page, errors) = await app.NewPageAsync(390, 844);
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "alice", "/console/matrix");
        await AssertNoSidewaysScrollAsync(page);
        await AssertAccessibleAsync(page, "matrix-phone");
        NoConsoleErrors(errors);
    }
}
