using System.Net;
using System.Text.RegularExpressions;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Http;

/// <summary>
/// The API reference page of an air-gapped deployment: everything it names is served by the server itself. Turned on
/// outside Development by Harness:ApiReference:Enabled (this host is Production), off otherwise.
/// </summary>
public sealed partial class ApiReferencePageTests(ApiReferencePageTests.ReferenceApplication app) : IClassFixture<ApiReferencePageTests.ReferenceApplication>
{
    public sealed class ReferenceApplication : HarnessApplication
    {
        protected override void Configure(IDictionary<string, string?> settings) => settings["Harness:ApiReference:Enabled"] = "true";
    }

    [Fact]
    public async Task The_page_loads_nothing_from_outside_the_server()
    {
        using var client = app.CreateClient();
        var page = await client.GetAsync("/scalar/v1");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        var html = await page.Content.ReadAsStringAsync();

        // Every URL the page loads (script, link, img, iframe sources, CSS imports and url()) and every absolute URL
        // anywhere in it (the inline configuration included: a CDN, a proxy, a font host would show here).
        var absolute = AbsoluteUrl().Matches(html).Select(m => m.Value).ToList();
        Assert.True(absolute.Count == 0, "the page names outside URLs: " + string.Join(", ", absolute));

        var loaded = Loaded().Matches(html).Select(m => m.Groups["url"].Value).ToList();
        Assert.NotEmpty(loaded);
        foreach (var url in loaded)
        {
            var asset = await client.GetAsync(new Uri(new Uri("http://localhost/scalar/v1"), url));
            Assert.True(asset.StatusCode == HttpStatusCode.OK, $"{url} is not served by the server ({(int)asset.StatusCode})");
            Assert.Contains("javascript", asset.Content.Headers.ContentType?.MediaType ?? "");
        }

        // The configuration the bundle starts from points at this server's own document and asks for no web fonts.
        Assert.True(html.Contains("\"url\":\"openapi/v1.json\"", StringComparison.Ordinal), html);
        Assert.Matches("\"withDefaultFonts\"\\s*:\\s*false", html);
    }

    [Fact]
    public async Task Outside_development_the_page_is_off_unless_configured()
    {
        await using var plain = new HarnessApplication();
        await ((IAsyncLifetime)plain).InitializeAsync();
        try
        {
            // Not mapped: anonymous callers get the fallback's 401, signed-in ones a 404.
            using var anonymous = plain.CreateClient();
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/scalar/v1")).StatusCode);
            using var admin = plain.ClientFor("root", "reference", roles: ["harness.admin"]);
            Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync("/scalar/v1")).StatusCode);
        }
        finally
        {
            await ((IAsyncLifetime)plain).DisposeAsync();
        }
    }

    [GeneratedRegex("""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^"'\s)]*""")]
    private static partial Regex AbsoluteUrl();

    [GeneratedRegex("""<script[^>]+src=["'](?<url>[^"']+)["']""")]
    private static partial Regex Loaded();
}
