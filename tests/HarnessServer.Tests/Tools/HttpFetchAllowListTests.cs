using System.Net;
using System.Net.Http.Json;
using System.Text;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;
using HarnessServer.Tools;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace HarnessServer.Tests.Tools;

/// <summary>Tenant admins keep http.fetch's allow-list through the API; the operator's configured list still counts.</summary>
public sealed class HttpFetchAllowListTests(HttpFetchAllowListTests.FetchApplication app) : IClassFixture<HttpFetchAllowListTests.FetchApplication>
{
    private const string Tenant = "egress";

    /// <summary>The server plus a target on loopback (reachable because private addresses are allowed, as for intranets).</summary>
    public sealed class FetchApplication : HarnessApplication
    {
        private WebApplication _target = null!;

        public int TargetPort { get; private set; }

        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["Harness:HttpFetch:AllowPrivateAddresses"] = "true";
            settings[$"Harness:HttpFetch:AllowedDomains:{Tenant}:0"] = "docs.example.org";
        }

        public override async Task InitializeAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            builder.Logging.ClearProviders();
            _target = builder.Build();
            _target.MapGet("/hello", () => "hello from the target");
            await _target.StartAsync();
            TargetPort = new Uri(_target.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
            await base.InitializeAsync();
            using var admin = ClientFor("root", Tenant, roles: [HarnessRoles.Admin]);
            (await admin.PutAsync("/v1/admin/policies/org", new StringContent("default: deny\nrules:\n  - tool: http.fetch\n    effect: allow\n",
                Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
        }

        public override async ValueTask DisposeAsync()
        {
            await base.DisposeAsync();
            await _target.DisposeAsync();
        }
    }

    private async Task<System.Text.Json.JsonElement> FetchAsync(HttpClient client, Guid session) =>
        await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls",
            new { tool = "http.fetch", arguments = new { url = $"http://localhost:{app.TargetPort}/hello" } })).JsonAsync(HttpStatusCode.OK);

    [Fact]
    public async Task An_admin_allows_a_domain_and_removes_it_again_audited_with_the_list_before_and_after()
    {
        using var admin = app.ClientFor("root", Tenant, roles: [HarnessRoles.Admin]);
        using var member = app.ClientFor("maria", Tenant);
        var session = (await (await member.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

        var refused = await FetchAsync(member, session);
        Assert.Equal("failed", refused.GetProperty("status").GetString());
        Assert.Equal("domain_not_allowed", refused.GetProperty("error").GetProperty("code").GetString());

        var set = await (await admin.PutAsJsonAsync("/v1/admin/http-fetch/domains", new { domains = new[] { "LOCALHOST.", "*.Bücher.example", "localhost" } }))
            .JsonAsync(HttpStatusCode.OK);
        Assert.Equal(["*.xn--bcher-kva.example", "localhost"], set.GetProperty("domains").EnumerateArray().Select(d => d.GetString()));
        Assert.Equal(["docs.example.org"], set.GetProperty("configured").EnumerateArray().Select(d => d.GetString()));
        Assert.Equal(["*.xn--bcher-kva.example", "docs.example.org", "localhost"], set.GetProperty("effective").EnumerateArray().Select(d => d.GetString()));

        var fetched = await FetchAsync(member, session);
        Assert.Equal("succeeded", fetched.GetProperty("status").GetString());
        Assert.Equal("hello from the target", fetched.GetProperty("result").GetProperty("body").GetString());

        await (await admin.PutAsJsonAsync("/v1/admin/http-fetch/domains", new { domains = Array.Empty<string>() })).JsonAsync(HttpStatusCode.OK);
        Assert.Equal("domain_not_allowed", (await FetchAsync(member, session)).GetProperty("error").GetProperty("code").GetString());

        var events = await (await admin.GetAsync("/v1/audit/events?type=http_fetch.domains_changed")).JsonAsync(HttpStatusCode.OK);
        var changes = events.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("payload")).ToList();
        Assert.Equal(2, changes.Count);
        Assert.Empty(changes[0].GetProperty("before").EnumerateArray());
        Assert.Equal(2, changes[0].GetProperty("after").GetArrayLength());
        Assert.Equal(2, changes[1].GetProperty("before").GetArrayLength());
        Assert.Empty(changes[1].GetProperty("after").EnumerateArray());
        Assert.True((await (await admin.GetAsync("/v1/audit/verify")).JsonAsync(HttpStatusCode.OK)).GetProperty("valid").GetBoolean());
    }

    [Fact]
    public async Task Admins_saving_at_once_leave_an_audit_trail_where_each_change_starts_from_the_one_before()
    {
        using var admin = app.ClientFor("root", "egress-race", roles: [HarnessRoles.Admin]);

        var saves = Enumerable.Range(0, 6).Select(i =>
            admin.PutAsJsonAsync("/v1/admin/http-fetch/domains", new { domains = new[] { $"host{i}.example" } }));
        foreach (var response in await Task.WhenAll(saves))
        {
            response.EnsureSuccessStatusCode();
        }

        var events = (await (await admin.GetAsync("/v1/audit/events?type=http_fetch.domains_changed")).JsonAsync(HttpStatusCode.OK))
            .GetProperty("events").EnumerateArray().Select(e => e.GetProperty("payload")).ToList();
        Assert.Equal(6, events.Count);
        Assert.Empty(events[0].GetProperty("before").EnumerateArray());
        for (var i = 1; i < events.Count; i++)
        {
            Assert.Equal(events[i - 1].GetProperty("after").ToString(), events[i].GetProperty("before").ToString());
        }

        var current = await (await admin.GetAsync("/v1/admin/http-fetch/domains")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(events[^1].GetProperty("after").ToString(), current.GetProperty("domains").ToString());
    }

    [Theory]
    [InlineData("https://example.com")]
    [InlineData("example.com:443")]
    [InlineData("example.com/path")]
    [InlineData("*")]
    [InlineData("*.com")]
    [InlineData("exa mple.com")]
    [InlineData("-bad.example")]
    [InlineData("10.0.0.1")]
    [InlineData("")]
    public async Task An_entry_that_is_not_a_host_name_is_refused_and_nothing_is_stored(string entry)
    {
        using var admin = app.ClientFor("root", "egress-invalid", roles: [HarnessRoles.Admin]);

        var problem = await (await admin.PutAsJsonAsync("/v1/admin/http-fetch/domains", new { domains = new[] { "good.example", entry } }))
            .ProblemAsync(HttpStatusCode.BadRequest, "invalid_domain");

        Assert.Contains("domains[1]", problem.GetProperty("detail").GetString());
        var current = await (await admin.GetAsync("/v1/admin/http-fetch/domains")).JsonAsync(HttpStatusCode.OK);
        Assert.Empty(current.GetProperty("domains").EnumerateArray());
    }

    [Fact]
    public async Task Only_admins_see_or_change_the_allow_list()
    {
        using var member = app.ClientFor("maria", Tenant);

        await (await member.GetAsync("/v1/admin/http-fetch/domains")).ProblemAsync(HttpStatusCode.Forbidden);
        await (await member.PutAsJsonAsync("/v1/admin/http-fetch/domains", new { domains = new[] { "evil.example" } })).ProblemAsync(HttpStatusCode.Forbidden);
    }

    [Fact]
    public void Domain_entries_are_normalised_to_lower_case_ascii()
    {
        Assert.Equal("example.com", HttpFetchAllowList.Normalize(" Example.COM. ", 0));
        Assert.Equal("*.xn--mnchen-3ya.de", HttpFetchAllowList.Normalize("*.münchen.de", 0));
    }
}
