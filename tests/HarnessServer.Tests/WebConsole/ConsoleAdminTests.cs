using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;
using Microsoft.Playwright;

namespace HarnessServer.Tests.WebConsole;

/// <summary>
/// The admin's pages in a real chromium signed in through the real issuer: the policy editor's whole story (an
/// invalid save shown at its line, a valid save, a simulation of unsaved text, a concurrent edit, a revert), the tool
/// registry and http.fetch allow-list, the agent settings, usage; each page accessible and no wider than the screen.
/// </summary>
[Collection(ConsoleCollection.Name)]
public sealed class ConsoleAdminTests(ConsoleApplication app)
{
    private const string Tenant = ConsoleApplication.AdminTenant;

    private const string OrgPolicy = """
        default: deny
        rules:
          - tool: fs.read
            effect: allow
          - tool: fs.write
            effect: ask
          - tool: http.fetch
            effect: deny
            locked: true
            reason: no egress from agents
        """;

    private HttpClient Admin() => app.Api("root", [HarnessRoles.Admin], tenant: Tenant);

    private static StringContent Yaml(string text) => new(text, Encoding.UTF8, "application/yaml");

    private static ILocatorAssertions Expect(ILocator locator) => Assertions.Expect(locator);

    [Fact]
    public async Task An_admin_saves_an_invalid_policy_then_a_valid_one_simulates_and_reverts()
    {
        using var api = Admin();
        (await api.PutAsync("/v1/admin/policies/org", Yaml(OrgPolicy))).EnsureSuccessStatusCode();
        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "adam", "/console/admin/policies");
        await page.GotoAsync("/console/admin/policies?level=team&name=platform");
        await Expect(page.GetByTestId("stored-version")).ToHaveTextAsync("never stored");
        var editor = page.GetByLabel("Policy (YAML) for team:platform");

        // An invalid save: each error at its line and column, the line marked, nothing stored.
        await editor.FillAsync("rules:\n  - tool: fs.write\n    effect: maybe\n");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save", Exact = true }).ClickAsync();
        var error = page.GetByTestId("policy-error-item");
        await Expect(error).ToHaveCountAsync(1);
        await Expect(error).ToContainTextAsync("line 3, column 13: rules[0].effect: unknown effect 'maybe'");
        await Expect(page.GetByTestId("error-line")).ToHaveAttributeAsync("id", "line-3");
        await Expect(editor).ToHaveValueAsync("rules:\n  - tool: fs.write\n    effect: maybe\n");
        await ConsoleStoryTests.AssertAccessibleAsync(page, "admin-policy-invalid");
        await (await api.GetAsync("/v1/admin/policies/teams/platform")).ProblemAsync(HttpStatusCode.NotFound, "policy_not_found");

        // A team rule cannot loosen a locked org rule, and the error says so at the rule.
        await editor.FillAsync("rules:\n  - tool: http.fetch\n    effect: allow\n");
        await page.GetByRole(AriaRole.Button, new() { Name = "Validate", Exact = true }).ClickAsync();
        await Expect(error).ToContainTextAsync("line 2, column 5: rules[0]: allow http.fetch cannot take effect");
        await Expect(error).ToContainTextAsync("(deny http.fetch: no egress from agents) is locked");

        // A valid save: stored as version 1 and in force.
        const string valid = "rules:\n  - tool: fs.write\n    effect: allow\n    args: { path: \"src/**\" }\n";
        await editor.FillAsync(valid);
        await page.GetByRole(AriaRole.Button, new() { Name = "Validate", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("valid")).ToHaveTextAsync("The policy is valid: 1 rule.");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("notice")).ToHaveTextAsync("Version 1 stored and in force.");
        await Expect(page.GetByTestId("stored-version")).ToContainTextAsync("version 1, by Adam Admin");
        Assert.Equal(valid, await (await api.GetAsync("/v1/admin/policies/teams/platform")).Content.ReadAsStringAsync());

        // Simulate an unsaved edit: the decision, the deciding rule and why; nothing stored.
        const string stricter = "rules:\n  - tool: fs.write\n    effect: deny\n    args: { path: \"src/**\" }\n    reason: frozen for the release\n";
        await editor.FillAsync(stricter);
        await page.GetByLabel("Tool", new() { Exact = true }).FillAsync("fs.write");
        await page.GetByLabel("Arguments (a JSON object)").FillAsync("""{"path": "src/app.cs", "content": "x"}""");
        await page.GetByLabel("User", new() { Exact = true }).FillAsync("alice");
        await page.GetByLabel("Teams (comma-separated)").FillAsync("platform");
        await page.GetByRole(AriaRole.Button, new() { Name = "Simulate", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("sim-effect")).ToHaveTextAsync("deny");
        await Expect(page.GetByTestId("sim-rule")).ToHaveTextAsync($"{Tenant}/teams/platform.yaml#0 (team)");
        await Expect(page.GetByTestId("sim-explanation")).ToHaveTextAsync("frozen for the release");
        await Expect(editor).ToHaveValueAsync(stricter);
        await ConsoleStoryTests.AssertAccessibleAsync(page, "admin-policy-simulated");
        await page.GetByRole(AriaRole.Button, new() { Name = "Diff", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("diff")).ToContainTextAsync("-     effect: allow");
        await Expect(page.GetByTestId("diff")).ToContainTextAsync("+     reason: frozen for the release");
        var etag = (await api.GetAsync("/v1/admin/policies/teams/platform")).Headers.ETag!.Tag;
        Assert.Equal("\"1\"", etag);

        // Someone else stores a version meanwhile: the console's save is refused, the text typed stays.
        using (var other = new HttpRequestMessage(HttpMethod.Put, "/v1/admin/policies/teams/platform") { Content = Yaml("rules:\n  - tool: fs.list\n    effect: allow\n") })
        {
            other.Headers.IfMatch.Add(new EntityTagHeaderValue(etag));
            (await api.SendAsync(other)).EnsureSuccessStatusCode();
        }

        await page.GetByRole(AriaRole.Button, new() { Name = "Save", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("policy-error")).ToContainTextAsync("Not stored: someone else stored version 2 of team:platform while you edited version 1");
        await Expect(editor).ToHaveValueAsync(stricter);
        await Expect(page.GetByTestId("diff")).ToContainTextAsync("- ");
        Assert.Contains("fs.list", await (await api.GetAsync("/v1/admin/policies/teams/platform")).Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // Revert to version 1: stored as version 3 with its text, audited as an admin change.
        await page.GetByRole(AriaRole.Button, new() { Name = "Revert to version 1" }).ClickAsync();
        await Expect(page.GetByTestId("notice")).ToHaveTextAsync("Version 1 restored as version 3.");
        await Expect(page.GetByTestId("version")).ToHaveCountAsync(3);
        var reverted = await api.GetAsync("/v1/admin/policies/teams/platform");
        Assert.Equal("\"3\"", reverted.Headers.ETag!.Tag);
        Assert.Equal(valid, await reverted.Content.ReadAsStringAsync());
        var events = await (await api.GetAsync("/v1/audit/events?type=policy.changed&limit=1000")).JsonAsync(HttpStatusCode.OK);
        var last = events.GetProperty("events").EnumerateArray().Last();
        Assert.Equal("adam", last.GetProperty("actor").GetProperty("id").GetString());
        Assert.Equal(("team:platform", "revert", 1, 3), (last.GetProperty("payload").GetProperty("level").GetString(),
            last.GetProperty("payload").GetProperty("origin").GetString(), last.GetProperty("payload").GetProperty("restoresVersion").GetInt32(),
            last.GetProperty("payload").GetProperty("afterVersion").GetInt32()));
        await ConsoleStoryTests.AssertAccessibleAsync(page, "admin-policy-reverted");
        ConsoleStoryTests.NoConsoleErrors(errors);
    }

    [Theory]
    [InlineData(1280, 800)]
    [InlineData(390, 844)]
    public async Task Every_admin_page_is_accessible_and_no_wider_than_the_screen(int width, int height)
    {
        var (context, page, errors) = await app.NewPageAsync(width, height);
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "adam", "/console/admin/policies");
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = "Admin", Exact = true })).ToBeVisibleAsync();
        foreach (var path in new[] { "/console/admin/policies", "/console/admin/policies?level=team", "/console/admin/tools", "/console/admin/agent", "/console/admin/usage" })
        {
            await page.GotoAsync(path);
            var overflow = await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth - window.innerWidth");
            Assert.True(overflow <= 0, $"{path} is {overflow}px wider than a {width}px screen.");
            var name = path.Replace("/console/admin/", "admin-", StringComparison.Ordinal).Replace("?level=", "-", StringComparison.Ordinal);
            await ConsoleStoryTests.AssertAccessibleAsync(page, width < 640 ? name + "-phone" : name);
        }

        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Usage per user and model" })).ToBeVisibleAsync();
        ConsoleStoryTests.NoConsoleErrors(errors);
    }

    [Fact]
    public async Task An_admin_disables_a_tool_and_sets_the_http_fetch_allow_list()
    {
        using var api = Admin();
        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "adam", "/console/admin/tools");
        var row = page.Locator("[data-testid=tool][data-tool='fs.list']");
        await Expect(row).ToContainTextAsync("\"type\": \"object\"");
        await row.GetByLabel("Enabled").UncheckAsync();
        await row.GetByLabel("Description of fs.list").FillAsync("Lists a folder (off for now)");
        await row.GetByRole(AriaRole.Button, new() { Name = "Save fs.list" }).ClickAsync();
        await Expect(page.GetByTestId("notice")).ToHaveTextAsync("fs.list is stored and in force.");
        await Expect(row).ToHaveAttributeAsync("data-enabled", "false");
        var tool = await (await api.GetAsync("/v1/admin/tools/fs.list")).JsonAsync(HttpStatusCode.OK);
        Assert.False(tool.GetProperty("enabled").GetBoolean());
        Assert.Equal("Lists a folder (off for now)", tool.GetProperty("description").GetString());
        await row.GetByLabel("Enabled").CheckAsync();
        await row.GetByRole(AriaRole.Button, new() { Name = "Save fs.list" }).ClickAsync();
        await Expect(row).ToHaveAttributeAsync("data-enabled", "true");

        // A bad entry is refused with the service's reason and nothing is stored; then a good list is.
        var domains = page.GetByLabel("Set by admins (one a line)");
        await domains.FillAsync("docs.example.com\nhttps://evil.example/path");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save the allow-list" }).ClickAsync();
        await Expect(page.GetByTestId("tool-error")).ToContainTextAsync("domains[1] 'https://evil.example/path' is not a host name");
        Assert.Empty((await (await api.GetAsync("/v1/admin/http-fetch/domains")).JsonAsync(HttpStatusCode.OK)).GetProperty("domains").EnumerateArray());
        await domains.FillAsync("docs.example.com\n*.api.example.org");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save the allow-list" }).ClickAsync();
        await Expect(page.GetByTestId("effective-domains")).ToHaveTextAsync("*.api.example.org, docs.example.com");
        var stored = await (await api.GetAsync("/v1/admin/http-fetch/domains")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(["*.api.example.org", "docs.example.com"], stored.GetProperty("domains").EnumerateArray().Select(d => d.GetString()));
        ConsoleStoryTests.NoConsoleErrors(errors);
    }

    [Fact]
    public async Task An_admin_changes_the_agent_settings_and_never_sees_the_model_key()
    {
        using var api = Admin();
        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "adam", "/console/admin/agent");
        await Expect(page.GetByTestId("api-key")).ToHaveTextAsync("set (not shown)");
        Assert.DoesNotContain("test-key", await page.ContentAsync(), StringComparison.Ordinal);

        await page.GetByLabel("Start each turn by retrieving relevant memory items").CheckAsync();
        await page.GetByLabel("Memory items retrieved into a turn (1 to 20)").FillAsync("7");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save the settings" }).ClickAsync();
        await Expect(page.GetByTestId("notice")).ToHaveTextAsync("The settings are stored and apply to the next turn.");
        await Expect(page.GetByTestId("settings-updated")).ToContainTextAsync("Last changed by adam");
        var settings = await (await api.GetAsync("/v1/admin/agent-settings")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal((true, 7), (settings.GetProperty("memoryRetrieval").GetBoolean(), settings.GetProperty("memoryItems").GetInt32()));
        ConsoleStoryTests.NoConsoleErrors(errors);
    }

    [Fact]
    public async Task Usage_shows_each_users_turns_and_tokens_per_model()
    {
        app.Model.Reset();
        app.Model.Reply("First answer.", promptTokens: 30, completionTokens: 5).Reply("Second answer.", promptTokens: 40, completionTokens: 6);
        using var member = app.Api("uma", tenant: Tenant);
        var session = (await (await member.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
        (await member.PostJsonAsync($"/v1/sessions/{session}/messages", new { content = "Hello" })).EnsureSuccessStatusCode();
        (await member.PostJsonAsync($"/v1/sessions/{session}/messages", new { content = "Again" })).EnsureSuccessStatusCode();

        var (context, page, errors) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, "adam", "/console/admin/usage");
        var line = page.Locator("[data-testid=usage][data-user='uma']");
        await Expect(line).ToHaveCountAsync(1);
        await Expect(line).ToHaveAttributeAsync("data-model", "scripted-model");
        await Expect(line.GetByTestId("turns")).ToHaveTextAsync("2");
        await Expect(line.GetByTestId("calls")).ToHaveTextAsync("2");
        await Expect(line.GetByTestId("input")).ToHaveTextAsync("70");
        await Expect(line.GetByTestId("output")).ToHaveTextAsync("11");

        // Days before any call show none; a day that is not a day says so instead of failing.
        await page.GotoAsync("/console/admin/usage?from=2001-01-01&to=2001-01-31");
        await Expect(page.Locator("[data-testid=usage]")).ToHaveCountAsync(0);
        await page.GotoAsync("/console/admin/usage?from=yesterday");
        await Expect(page.GetByTestId("usage-error")).ToContainTextAsync("From must be a day written as yyyy-MM-dd");
        await Expect(line).ToHaveCountAsync(1);
        ConsoleStoryTests.NoConsoleErrors(errors);
    }

    [Fact]
    public async Task Admin_forms_without_their_antiforgery_token_are_refused_and_members_are_not_let_in()
    {
        var (context, page, _) = await app.NewPageAsync();
        await using var __ = context;
        await ConsoleApplication.SignInAsync(page, "adam", "/console/admin/policies");
        var cookies = await context.CookiesAsync();
        using var forged = new HttpClient(new HttpClientHandler { UseCookies = false, AllowAutoRedirect = false }) { BaseAddress = new Uri(app.Address) };
        forged.DefaultRequestHeaders.Add("Cookie", string.Join("; ", cookies.Select(c => $"{c.Name}={c.Value}")));

        var post = await forged.PostAsync("/console/admin/policies?level=team&name=forged", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["_handler"] = "edit", ["Edit.Action"] = "save", ["Edit.Content"] = "rules:\n  - tool: '*'\n    effect: allow\n", ["Edit.BaseVersion"] = "0",
        }));
        Assert.Equal(HttpStatusCode.BadRequest, post.StatusCode);
        using var api = Admin();
        await (await api.GetAsync("/v1/admin/policies/teams/forged")).ProblemAsync(HttpStatusCode.NotFound);

        var (memberContext, member, _) = await app.NewPageAsync();
        await using var ___ = memberContext;
        await ConsoleApplication.SignInAsync(member, "alice");
        Assert.Equal(0, await member.GetByRole(AriaRole.Link, new() { Name = "Admin", Exact = true }).CountAsync());
        foreach (var path in new[] { "/console/admin/policies", "/console/admin/tools", "/console/admin/agent", "/console/admin/usage" })
        {
            await member.GotoAsync(path);
            Assert.Equal("/console/denied", new Uri(member.Url).AbsolutePath);
        }
    }
}
