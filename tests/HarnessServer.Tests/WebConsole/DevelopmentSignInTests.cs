using System.Net;
using System.Text.RegularExpressions;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;

namespace HarnessServer.Tests.WebConsole;

/// <summary>
/// Development without an issuer (what <c>scripts/run.sh</c> starts): the console offers the local sign-in, through
/// the development issuer, with whatever user, tenant, teams and roles are picked.
/// </summary>
public sealed partial class DevelopmentSignInTests(DevelopmentSignInTests.DevelopmentApplication app)
    : IClassFixture<DevelopmentSignInTests.DevelopmentApplication>
{
    public sealed class DevelopmentApplication : HarnessApplication
    {
        protected override void Configure(IDictionary<string, string?> settings) => settings["Authentication:Authority"] = "";

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            builder.UseEnvironment("Development");
        }
    }

    [Fact]
    public async Task The_local_sign_in_signs_in_with_the_picked_identity_and_says_so_on_every_page()
    {
        using var client = app.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true });
        var token = await LocalFormTokenAsync(client);
        var signIn = await client.PostAsync("/console/sign-in/local", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["__RequestVerificationToken"] = token,
            ["user"] = "dana",
            ["name"] = "Dana Dev",
            ["tenant"] = "devtenant",
            ["teams"] = "platform, web",
            ["roles"] = HarnessRoles.Approver,
            ["returnUrl"] = "/console/approvals",
        }));
        Assert.Equal(HttpStatusCode.Redirect, signIn.StatusCode);
        Assert.Equal("/console/approvals", signIn.Headers.Location!.OriginalString);

        // The approver role picked opens the queue; the page names who signed in and marks the sign-in as local.
        var approvals = await client.GetAsync("/console/approvals");
        Assert.Equal(HttpStatusCode.OK, approvals.StatusCode);
        var html = await approvals.Content.ReadAsStringAsync();
        Assert.Contains("Dana Dev (dana) · tenant devtenant", html, StringComparison.Ordinal);
        Assert.Contains("Development sign-in: this identity was picked by hand", html, StringComparison.Ordinal);
        Assert.Contains("in your teams (platform, web)", html, StringComparison.Ordinal);

        // The identity was provisioned as the API would provision it for a token with these claims.
        Assert.Equal(1, await app.CountAsync("select count(*) from users where tenant_id = 'devtenant' and id = 'dana'"));
    }

    [Theory]
    [InlineData("", "devtenant", "", "Name a user and a tenant.")]
    [InlineData("dana", "devtenant", "harness.superuser", "'harness.superuser' is not a role of the product.")]
    public async Task A_local_sign_in_with_bad_input_is_refused_on_the_sign_in_page(string user, string tenant, string role, string message)
    {
        using var client = app.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true });
        var token = await LocalFormTokenAsync(client);
        var form = new List<KeyValuePair<string, string>> { new("__RequestVerificationToken", token), new("user", user), new("tenant", tenant) };
        if (role.Length > 0)
        {
            form.Add(new("roles", role));
        }

        var signIn = await client.PostAsync("/console/sign-in/local", new FormUrlEncodedContent(form));
        Assert.Equal(HttpStatusCode.Redirect, signIn.StatusCode);
        var page = await client.GetAsync(signIn.Headers.Location!.OriginalString);
        Assert.Contains(message, WebUtility.HtmlDecode(await page.Content.ReadAsStringAsync()), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Redirect, (await client.GetAsync("/console/sessions")).StatusCode);
    }

    [Fact]
    public async Task A_local_sign_in_without_the_forms_antiforgery_token_is_refused()
    {
        using var client = app.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true });
        var signIn = await client.PostAsync("/console/sign-in/local", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["user"] = "mallory", ["tenant"] = "devtenant", ["roles"] = HarnessRoles.Admin,
        }));
        Assert.Equal(HttpStatusCode.BadRequest, signIn.StatusCode);
        Assert.Equal(HttpStatusCode.Redirect, (await client.GetAsync("/console/sessions")).StatusCode);
    }

    private static async Task<string> LocalFormTokenAsync(HttpClient client)
    {
        var page = await (await client.GetAsync("/console/sign-in")).Content.ReadAsStringAsync();
        Assert.Contains("Development sign-in", page, StringComparison.Ordinal);
        var local = page[page.IndexOf("/console/sign-in/local", StringComparison.Ordinal)..];
        return Token().Match(local).Groups[1].Value;
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\" value=\"([^\"]+)\"")]
    private static partial Regex Token();
}
