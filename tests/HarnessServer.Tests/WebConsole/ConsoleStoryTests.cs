using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Deque.AxeCore.Playwright;
using Microsoft.Playwright;

namespace HarnessServer.Tests.WebConsole;

/// <summary>
/// The console's first end-to-end story in a real browser: a member's call that needs approval, approved by another
/// person in a second browser context, whose result then appears on the member's page without a reload.
/// </summary>
[Collection(ConsoleCollection.Name)]
public sealed class ConsoleStoryTests(ConsoleApplication app)
{
    [Fact]
    public async Task A_held_call_approved_in_a_second_browser_shows_its_result_live_in_the_first()
    {
        var (memberContext, member, memberErrors) = await app.NewPageAsync();
        var (approverContext, approver, approverErrors) = await app.NewPageAsync();
        await using var _ = memberContext;
        await using var __ = approverContext;

        // The member signs in at the issuer and starts a session.
        await ConsoleApplication.SignInAsync(member, "alice");
        await Expect(member.GetByTestId("who")).ToContainTextAsync("Alice Member (alice) · tenant console");
        await AssertAccessibleAsync(member, "sessions");
        await member.GetByRole(AriaRole.Button, new() { Name = "New session" }).ClickAsync();
        await member.WaitForURLAsync(url => url.Contains("/console/sessions/", StringComparison.Ordinal));
        var session = Guid.Parse(new Uri(member.Url).Segments[^1]);

        // The call the org policy asks about: held, with the rule that asked.
        var content = $"written after approval {Guid.NewGuid():N}";
        await member.GetByLabel("Tool", new() { Exact = true }).SelectOptionAsync("fs.write");
        await member.GetByLabel("Arguments (a JSON object)").FillAsync(JsonSerializer.Serialize(new { path = "notes/approved.txt", content }));
        await member.GetByRole(AriaRole.Button, new() { Name = "Call", Exact = true }).ClickAsync();
        var call = member.GetByTestId("call").First;
        await Expect(call.GetByTestId("call-status")).ToHaveTextAsync("pending approval");
        await Expect(call.GetByTestId("decision")).ToContainTextAsync("ask by org rule");
        await Expect(call.GetByTestId("approval")).ToContainTextAsync("pending");
        await AssertAccessibleAsync(member, "session-pending");

        // A marker in the page's own JavaScript world: it survives only if the page is never reloaded.
        await member.EvaluateAsync("() => { window.consoleTestMarker = 'not reloaded'; }");

        // The approver sees the exact arguments and the rule, and approves with a comment.
        await ConsoleApplication.SignInAsync(approver, "bob", "/console/approvals");
        var pending = approver.GetByTestId("pending").Filter(new() { HasText = content });
        await Expect(pending).ToHaveCountAsync(1);
        await Expect(pending.GetByTestId("requester")).ToHaveTextAsync("alice");
        await Expect(pending.GetByTestId("arguments")).ToContainTextAsync($"\"content\": \"{content}\"");
        await Expect(pending.GetByTestId("arguments")).ToContainTextAsync("\"path\": \"notes/approved.txt\"");
        await Expect(pending.GetByTestId("rule")).ToContainTextAsync("writes are reviewed by the team");
        await Expect(pending.GetByTestId("preview")).ToContainTextAsync(content);
        await AssertAccessibleAsync(approver, "approvals");
        await pending.GetByLabel("Comment (optional)").FillAsync("looks right");
        await pending.GetByRole(AriaRole.Button, new() { Name = "Approve" }).ClickAsync();
        await Expect(approver.GetByRole(AriaRole.Status)).ToHaveTextAsync("Decision recorded.");
        var decided = approver.GetByTestId("history").Filter(new() { HasText = "looks right" });
        await Expect(decided).ToContainTextAsync("approved");
        await Expect(approver.GetByTestId("pending").Filter(new() { HasText = content })).ToHaveCountAsync(0);

        // The member's page shows the approval and the result without a reload.
        await Expect(call.GetByTestId("call-status")).ToHaveTextAsync("succeeded", new() { Timeout = 15_000 });
        await Expect(call.GetByTestId("approval")).ToContainTextAsync("approved by Bob Approver");
        await Expect(call.GetByTestId("approval")).ToContainTextAsync("looks right");
        Assert.Equal("not reloaded", await member.EvaluateAsync<string>("() => window.consoleTestMarker"));
        await AssertAccessibleAsync(member, "session-succeeded");

        // What the console showed is what happened: the file exists with the approved content.
        using var owner = app.Api("alice");
        var read = await owner.PostAsync($"/v1/sessions/{session}/tool-calls", JsonContent(new { tool = "fs.read", arguments = new { path = "notes/approved.txt" } }));
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        Assert.Contains(content, await read.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        NoConsoleErrors(memberErrors);
        NoConsoleErrors(approverErrors);
    }

    [Fact]
    public async Task A_message_runs_an_agent_turn_whose_held_call_and_reply_appear_live()
    {
        app.Model.Reset();
        app.Model.Call("fs_write", new { path = "agent/plan.md", content = "the agent's plan" }).Reply("The plan is written.");
        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "alice");
        await page.GetByRole(AriaRole.Button, new() { Name = "New session" }).ClickAsync();
        await page.WaitForURLAsync(url => url.Contains("/console/sessions/", StringComparison.Ordinal));

        await page.GetByLabel("Message", new() { Exact = true }).FillAsync("Write the plan, please.");
        await page.GetByRole(AriaRole.Button, new() { Name = "Send" }).ClickAsync();
        var conversation = page.GetByTestId("conversation");
        await Expect(conversation).ToContainTextAsync("Write the plan, please.");
        await Expect(conversation).ToContainTextAsync("Agent proposes");
        var call = page.GetByTestId("call").First;
        await Expect(call.GetByTestId("call-status")).ToHaveTextAsync("pending approval");
        await page.EvaluateAsync("() => { window.consoleTestMarker = 'not reloaded'; }");

        // Another approver decides over the API; the turn continues and its reply arrives on the open page.
        using var approver = app.Api("bob", [HarnessServer.Identity.HarnessRoles.Approver]);
        var approvalId = await call.GetAttributeAsync("data-call-id");
        var list = JsonDocument.Parse(await approver.GetStringAsync("/v1/approvals?status=pending")).RootElement.GetProperty("approvals");
        var approval = list.EnumerateArray().Single(a => a.GetProperty("toolCallId").GetString() == approvalId).GetProperty("id").GetString();
        var decided = await approver.PostAsync($"/v1/approvals/{approval}/decision", JsonContent(new { approve = true, comment = "fine" }));
        Assert.Equal(HttpStatusCode.OK, decided.StatusCode);

        await Expect(call.GetByTestId("call-status")).ToHaveTextAsync("succeeded", new() { Timeout = 15_000 });
        await Expect(conversation).ToContainTextAsync("The plan is written.", new() { Timeout = 15_000 });
        Assert.Equal("not reloaded", await page.EvaluateAsync<string>("() => window.consoleTestMarker"));
        await AssertAccessibleAsync(page, "conversation");
        NoConsoleErrors(errors);
    }

    [Fact]
    public async Task The_session_page_works_at_a_phone_width()
    {
        var (context, page, errors) = await app.NewPageAsync(390, 844);
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "alice");
        await page.GetByRole(AriaRole.Button, new() { Name = "New session" }).ClickAsync();
        await page.WaitForURLAsync(url => url.Contains("/console/sessions/", StringComparison.Ordinal));
        await page.GetByLabel("Tool", new() { Exact = true }).SelectOptionAsync("shell.exec");
        await page.GetByLabel("Arguments (a JSON object)").FillAsync("""{"command": "echo from a phone"}""");
        await page.GetByRole(AriaRole.Button, new() { Name = "Call", Exact = true }).ClickAsync();
        var call = page.GetByTestId("call").First;
        await Expect(call.GetByTestId("call-status")).ToHaveTextAsync("succeeded");
        await Expect(call.GetByTestId("result")).ToContainTextAsync("from a phone");

        // Nothing is wider than the screen.
        var overflow = await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth - window.innerWidth");
        Assert.True(overflow <= 0, $"The page is {overflow}px wider than a 390px screen.");
        await AssertAccessibleAsync(page, "session-phone");
        NoConsoleErrors(errors);
    }

    [Fact]
    public async Task Bad_arguments_and_refused_calls_are_said_on_the_page()
    {
        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "alice");
        await page.GetByRole(AriaRole.Button, new() { Name = "New session" }).ClickAsync();
        await page.WaitForURLAsync(url => url.Contains("/console/sessions/", StringComparison.Ordinal));

        await page.GetByLabel("Arguments (a JSON object)").FillAsync("{not json");
        await page.GetByRole(AriaRole.Button, new() { Name = "Call", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("call-error")).ToContainTextAsync("The arguments are not JSON");

        await page.GetByLabel("Tool", new() { Exact = true }).SelectOptionAsync("fs.write");
        await page.GetByLabel("Arguments (a JSON object)").FillAsync("""{"path": 42}""");
        await page.GetByRole(AriaRole.Button, new() { Name = "Call", Exact = true }).ClickAsync();
        var call = page.GetByTestId("call").First;
        await Expect(call.GetByTestId("call-status")).ToHaveTextAsync("rejected");

        await page.GetByLabel("Tool", new() { Exact = true }).SelectOptionAsync("shell.exec");
        await page.GetByLabel("Arguments (a JSON object)").FillAsync("""{"command": "rm -rf /"}""");
        await page.GetByRole(AriaRole.Button, new() { Name = "Call", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("call").First.GetByTestId("call-status")).ToHaveTextAsync("denied");
        await ScreenshotAsync(page, "session-refusals");
        NoConsoleErrors(errors);
    }

    [Fact]
    public async Task A_member_without_the_approver_role_is_not_shown_the_queue()
    {
        var (context, page, _) = await app.NewPageAsync();
        await using var __ = context;
        await ConsoleApplication.SignInAsync(page, "alice");
        Assert.Equal(0, await page.GetByRole(AriaRole.Link, new() { Name = "Approvals" }).CountAsync());
        await page.GotoAsync("/console/approvals");
        Assert.Equal("/console/denied", new Uri(page.Url).AbsolutePath);
        await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("do not open that page");
    }

    [Fact]
    public async Task An_approver_of_another_team_does_not_see_the_call_and_cannot_decide_it()
    {
        using var requester = app.Api("dave");
        var session = (await (await requester.PostAsync("/v1/sessions", null)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();
        var held = await requester.PostAsync($"/v1/sessions/{session}/tool-calls",
            JsonContent(new { tool = "fs.write", arguments = new { path = "x.txt", content = "only platform decides" } }));
        Assert.Equal(HttpStatusCode.Accepted, held.StatusCode);

        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "carol", "/console/approvals");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Approvals", Exact = true })).ToBeVisibleAsync();
        Assert.Equal(0, await page.GetByTestId("pending").Filter(new() { HasText = "only platform decides" }).CountAsync());
        NoConsoleErrors(errors);
    }

    [Fact]
    public async Task Each_of_several_pending_calls_is_decided_from_its_own_form()
    {
        using var requester = app.Api("dave");
        var marks = new[] { $"first of two {Guid.NewGuid():N}", $"second of two {Guid.NewGuid():N}" };
        foreach (var mark in marks)
        {
            var session = (await (await requester.PostAsync("/v1/sessions", null)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();
            var held = await requester.PostAsync($"/v1/sessions/{session}/tool-calls",
                JsonContent(new { tool = "fs.write", arguments = new { path = "two.txt", content = mark } }));
            Assert.Equal(HttpStatusCode.Accepted, held.StatusCode);
        }

        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "bob", "/console/approvals");
        var second = page.GetByTestId("pending").Filter(new() { HasText = marks[1] });
        await Expect(page.GetByTestId("pending").Filter(new() { HasText = marks[0] })).ToHaveCountAsync(1);
        await Expect(second).ToHaveCountAsync(1);

        // The second card's form decides the second call only, with several forms on the page.
        await second.GetByLabel("Comment (optional)").FillAsync("not this one");
        await second.GetByRole(AriaRole.Button, new() { Name = "Reject" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToHaveTextAsync("Decision recorded.");
        await Expect(page.GetByTestId("history").Filter(new() { HasText = "not this one" })).ToContainTextAsync("rejected");
        var first = page.GetByTestId("pending").Filter(new() { HasText = marks[0] });
        await Expect(first).ToHaveCountAsync(1);

        await first.GetByRole(AriaRole.Button, new() { Name = "Approve" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToHaveTextAsync("Decision recorded.");
        await Expect(page.GetByTestId("pending").Filter(new() { HasText = marks[0] })).ToHaveCountAsync(0);
        NoConsoleErrors(errors);
    }

    [Fact]
    public async Task Signing_out_ends_the_console_session()
    {
        var (context, page, _) = await app.NewPageAsync();
        await using var __ = context;
        await ConsoleApplication.SignInAsync(page, "alice");
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToHaveTextAsync("You are signed out of the console.");
        await AssertAccessibleAsync(page, "sign-in");
        await page.GotoAsync("/console/sessions");
        Assert.Equal("/console/sign-in", new Uri(page.Url).AbsolutePath);
    }

    internal static void NoConsoleErrors(List<string> errors) =>
        Assert.True(errors.Count == 0, "The browser reported errors:\n" + string.Join('\n', errors));

    internal static StringContent JsonContent(object value) =>
        new(JsonSerializer.Serialize(value), System.Text.Encoding.UTF8, "application/json");

    private static ILocatorAssertions Expect(ILocator locator) => Assertions.Expect(locator);

    /// <summary>axe-core on the page as it is now: no serious or critical violation; then a screenshot of it.</summary>
    internal static async Task AssertAccessibleAsync(IPage page, string name)
    {
        var result = await page.RunAxe();
        var serious = result.Violations.Where(v => v.Impact is "serious" or "critical")
            .Select(v => $"{v.Id} ({v.Impact}): {v.Help} at {string.Join(", ", v.Nodes.Select(n => string.Join(" ", n.Target)))}")
            .ToList();
        Assert.True(serious.Count == 0, $"{page.Url}:\n" + string.Join('\n', serious));
        await ScreenshotAsync(page, name);
    }

    internal static async Task ScreenshotAsync(IPage page, string name)
    {
        Directory.CreateDirectory(ConsoleApplication.ScreenshotFolder);
        await page.ScreenshotAsync(new PageScreenshotOptions
        {
            Path = Path.Combine(ConsoleApplication.ScreenshotFolder, $"console-{name}.png"),
            FullPage = true,
        });
    }
}
