using System.Net;
using System.Text.RegularExpressions;
using HarnessServer.WebConsole;
using Microsoft.Playwright;

namespace HarnessServer.Tests.WebConsole;

/// <summary>
/// What keeps the console's cookie session from weakening the API: the cookie never authorizes <c>/v1/*</c>, every
/// console form needs its antiforgery token, pages run under a strict CSP, and sign-in refuses what the API refuses.
/// </summary>
[Collection(ConsoleCollection.Name)]
public sealed partial class ConsoleSecurityTests(ConsoleApplication app)
{
    [Fact]
    public async Task A_console_cookie_does_not_authorize_the_api()
    {
        using var browser = await SignedInClientAsync("alice");
        // The cookie is a valid console session...
        Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("/console/sessions")).StatusCode);

        // ...and the API does not take it, for reads or writes, even at a path the cookie would be sent to.
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/v1/me")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.PostAsync("/v1/sessions", null)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/v1/approvals?status=pending")).StatusCode);
    }

    [Fact]
    public async Task A_bearer_token_does_not_open_console_pages()
    {
        using var api = app.Api("alice");
        using var client = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(app.Address) };
        client.DefaultRequestHeaders.Authorization = api.DefaultRequestHeaders.Authorization;
        var response = await client.GetAsync("/console/sessions");
        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        Assert.StartsWith("/console/sign-in", response.Headers.Location!.PathAndQuery, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Console_forms_without_their_antiforgery_token_are_refused()
    {
        using var browser = await SignedInClientAsync("alice");
        var before = await app.CountAsync("select count(*) from sessions where owner_user_id = 'alice'");

        // A page's form (the Razor form handler) and a route's form (sign-out), both posted as another site would.
        var create = await browser.PostAsync("/console/sessions", new FormUrlEncodedContent(new Dictionary<string, string> { ["_handler"] = "new-session" }));
        Assert.Equal(HttpStatusCode.BadRequest, create.StatusCode);
        var signOut = await browser.PostAsync("/console/sign-out", new FormUrlEncodedContent(new Dictionary<string, string>()));
        Assert.Equal(HttpStatusCode.BadRequest, signOut.StatusCode);
        Assert.Contains("antiforgery_failed", await signOut.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        Assert.Equal(before, await app.CountAsync("select count(*) from sessions where owner_user_id = 'alice'"));
        Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("/console/sessions")).StatusCode);
    }

    [Theory]
    [InlineData("/console/sign-in")]
    [InlineData("/console")]
    [InlineData("/console/sessions")]
    public async Task Console_pages_run_under_a_strict_content_security_policy_with_no_inline_code(string path)
    {
        using var browser = await SignedInClientAsync("alice");
        var response = await browser.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var policy = string.Join(";", response.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("default-src 'self'", policy, StringComparison.Ordinal);
        Assert.Contains("script-src 'self';", policy, StringComparison.Ordinal);
        Assert.Contains("style-src 'self';", policy, StringComparison.Ordinal);
        Assert.Contains("frame-ancestors 'none'", policy, StringComparison.Ordinal);
        Assert.DoesNotContain("unsafe", policy, StringComparison.Ordinal);
        Assert.Equal("DENY", string.Join(",", response.Headers.GetValues("X-Frame-Options")));

        var html = await response.Content.ReadAsStringAsync();
        Assert.DoesNotMatch(InlineScript(), html);
        Assert.DoesNotMatch(InlineStyle(), html);
    }

    [Fact]
    public async Task The_live_stream_of_another_users_session_does_not_exist()
    {
        using var owner = app.Api("erin");
        var created = await owner.PostAsync("/v1/sessions", null);
        var id = System.Text.Json.JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetGuid();

        using var browser = await SignedInClientAsync("alice");
        var stream = await browser.GetAsync($"/console/live/sessions/{id}");
        Assert.Equal(HttpStatusCode.NotFound, stream.StatusCode);
        Assert.Equal("application/problem+json", stream.Content.Headers.ContentType?.MediaType);
        var page = await browser.GetAsync($"/console/sessions/{id}");
        Assert.Equal(HttpStatusCode.NotFound, page.StatusCode);
    }

    [Fact]
    public async Task An_id_token_without_a_tenant_does_not_sign_in()
    {
        var (context, page, _) = await app.NewPageAsync();
        await using var __ = context;
        await page.GotoAsync("/console/sessions");
        await ConsoleApplication.LogInAtIssuerAsync(page, "nobody", url => url.AbsolutePath == "/console/sign-in" && url.Query.Contains("error=", StringComparison.Ordinal));
        await Assertions.Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("no 'tid' (tenant)");
        Assert.DoesNotContain(await context.CookiesAsync(), c => c.Name == "harness.console");
    }

    [Fact]
    public async Task Outside_Development_there_is_no_local_sign_in()
    {
        using var client = new HttpClient { BaseAddress = new Uri(app.Address) };
        var page = await (await client.GetAsync("/console/sign-in")).Content.ReadAsStringAsync();
        Assert.Contains("Sign in with your identity provider", page, StringComparison.Ordinal);
        Assert.DoesNotContain("Development sign-in", page, StringComparison.Ordinal);
        Assert.DoesNotContain("/console/sign-in/local", page, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/console/sessions", "/console/sessions")]
    [InlineData("/console", "/console")]
    [InlineData("/console?x=1", "/console?x=1")]
    [InlineData("//evil.example/console", "/console")]
    [InlineData("/\\evil.example", "/console")]
    [InlineData("https://evil.example/console", "/console")]
    [InlineData("/console//evil.example", "/console")]
    [InlineData("/console/../v1/me", "/console")]
    [InlineData("/v1/me", "/console")]
    [InlineData("/consoleevil", "/console")]
    [InlineData("", "/console")]
    [InlineData(null, "/console")]
    public void Sign_in_returns_only_to_console_paths_of_this_server(string? returnUrl, string expected) =>
        Assert.Equal(expected, ConsoleAuthentication.SafeReturnUrl(returnUrl));

    /// <summary>A client carrying the console cookie of a browser that signed in through the issuer.</summary>
    private async Task<HttpClient> SignedInClientAsync(string login)
    {
        var (context, page, _) = await app.NewPageAsync();
        await using var _ = context;
        await ConsoleApplication.SignInAsync(page, login);
        var cookies = await context.CookiesAsync();
        var client = new HttpClient(new HttpClientHandler { UseCookies = false, AllowAutoRedirect = false }) { BaseAddress = new Uri(app.Address) };
        client.DefaultRequestHeaders.Add("Cookie", string.Join("; ", cookies.Select(c => $"{c.Name}={c.Value}")));
        Assert.Contains(cookies, c => c.Name == "harness.console" && c.Path == "/console" && c.HttpOnly && c.SameSite == SameSiteAttribute.Lax);
        return client;
    }

    [GeneratedRegex(@"<script(?![^>]*\bsrc=)[^>]*>", RegexOptions.IgnoreCase)]
    private static partial Regex InlineScript();

    [GeneratedRegex(@"<style\b|\sstyle=", RegexOptions.IgnoreCase)]
    private static partial Regex InlineStyle();
}
