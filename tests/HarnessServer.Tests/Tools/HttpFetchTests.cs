using System.Net;
using HarnessServer.Http;
using HarnessServer.Pipeline;
using HarnessServer.Tools;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace HarnessServer.Tests.Tools;

public sealed class HttpFetchTests : IAsyncLifetime
{
    private WebApplication _target = null!;
    private int _port;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        _target = builder.Build();
        _target.MapGet("/hello", () => "hello from the target");
        _target.MapGet("/big", () => new string('x', 5000));
        _target.MapGet("/binary", () => Results.Bytes([0x89, 0x50, 0x00, 0xFF, 0x0A], "application/octet-stream"));
        _target.MapGet("/redirect-out", () => Results.Redirect("http://evil.example/steal"));
        _target.MapGet("/redirect-in", (HttpContext c) => Results.Redirect($"http://localhost:{c.Connection.LocalPort}/hello"));
        await _target.StartAsync();
        _port = new Uri(_target.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
    }

    public async Task DisposeAsync() => await _target.DisposeAsync();

    private static Fetcher Tool(bool allowPrivate, params string[] domains) => new(new HttpFetchTool(Options.Create(new HttpFetchOptions
    {
        AllowPrivateAddresses = allowPrivate,
        MaxResponseBytes = 1000,
    })), domains);

    /// <summary>The tool with tenant acme's allow-list; every other tenant has none.</summary>
    private sealed class Fetcher(HttpFetchTool tool, string[] acme) : IDisposable
    {
        public Task<ToolOutcome> FetchAsync(string tenant, string url, CancellationToken ct) => tool.FetchAsync(tenant == "acme" ? acme : [], url, ct);

        public void Dispose() => tool.Dispose();
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("10.1.2.3")]
    [InlineData("172.16.0.1")]
    [InlineData("192.168.1.1")]
    [InlineData("169.254.169.254")]
    [InlineData("100.64.0.1")]
    [InlineData("0.0.0.0")]
    [InlineData("224.0.0.1")]
    [InlineData("::1")]
    [InlineData("fe80::1")]
    [InlineData("fd00::1")]
    [InlineData("::ffff:127.0.0.1")]
    [InlineData("::127.0.0.1")]
    [InlineData("::10.0.0.1")]
    [InlineData("2001:0:4136:e378:8000:63bf:3fff:fdd2")]
    [InlineData("64:ff9b:1::a00:1")]
    [InlineData("100::1")]
    public void Private_loopback_and_link_local_addresses_are_not_public(string address) =>
        Assert.False(AddressGuard.IsPublic(IPAddress.Parse(address)));

    [Theory]
    [InlineData("93.184.216.34")]
    [InlineData("2606:4700::6810:84e5")]
    public void Public_addresses_are_public(string address) => Assert.True(AddressGuard.IsPublic(IPAddress.Parse(address)));

    [Theory]
    [InlineData("*.example.com", "api.example.com", true)]
    [InlineData("*.example.com", "example.com", false)]
    [InlineData("*.example.com", "evilexample.com", false)]
    [InlineData("example.com", "example.com.evil.net", false)]
    public void Domain_patterns_match_whole_labels(string pattern, string host, bool expected) =>
        Assert.Equal(expected, HttpFetchAllowList.Matches(pattern, host));

    [Fact]
    public async Task Loopback_is_refused_after_resolution_even_when_the_domain_is_allowed()
    {
        using var tool = Tool(allowPrivate: false, "localhost");

        var outcome = await tool.FetchAsync("acme", $"http://localhost:{_port}/hello", default);

        Assert.False(outcome.Succeeded);
        Assert.Equal("address_blocked", outcome.Error!.Code);
    }

    [Fact]
    public async Task Domain_off_the_allow_list_is_refused_before_connecting()
    {
        using var tool = Tool(allowPrivate: true, "example.com");

        var outcome = await tool.FetchAsync("acme", $"http://localhost:{_port}/hello", default);

        Assert.Equal("domain_not_allowed", outcome.Error!.Code);
    }

    [Theory]
    [InlineData("file:///etc/passwd", "scheme_not_allowed")]
    [InlineData("ftp://localhost/x", "scheme_not_allowed")]
    [InlineData("http://user:pw@localhost/x", "credentials_in_url")]
    [InlineData("not a url", "invalid_url")]
    public async Task Only_plain_http_and_https_urls_are_fetched(string url, string code)
    {
        using var tool = Tool(allowPrivate: true, "localhost");

        Assert.Equal(code, (await tool.FetchAsync("acme", url, default)).Error!.Code);
    }

    [Fact]
    public async Task Allowed_fetch_returns_status_headers_and_a_capped_body()
    {
        using var tool = Tool(allowPrivate: true, "localhost");

        var hello = await tool.FetchAsync("acme", $"http://localhost:{_port}/hello", default);
        var big = await tool.FetchAsync("acme", $"http://localhost:{_port}/big", default);

        Assert.Equal(200, (int)hello.Result!["status"]!);
        Assert.Equal("hello from the target", (string)hello.Result["body"]!);
        Assert.True((bool)big.Result!["truncated"]!);
        Assert.StartsWith(new string('x', 1000) + "\n[response truncated", (string)big.Result["body"]!);
    }

    // A NUL in a body failed the jsonb write of the result and left the call unrecorded (issue 16).
    [Fact]
    public async Task A_binary_body_is_given_as_base64_without_loss()
    {
        using var tool = Tool(allowPrivate: true, "localhost");

        var binary = await tool.FetchAsync("acme", $"http://localhost:{_port}/binary", default);
        var text = await tool.FetchAsync("acme", $"http://localhost:{_port}/hello", default);

        Assert.Equal([0x89, 0x50, 0x00, 0xFF, 0x0A], Convert.FromBase64String((string)binary.Result!["body"]!));
        Assert.Equal("base64", (string)binary.Result["encoding"]!);
        Assert.Null(text.Result!["encoding"]);
    }

    [Fact]
    public async Task Every_redirect_hop_is_checked_against_the_allow_list()
    {
        using var tool = Tool(allowPrivate: true, "localhost");

        var outside = await tool.FetchAsync("acme", $"http://localhost:{_port}/redirect-out", default);
        var inside = await tool.FetchAsync("acme", $"http://localhost:{_port}/redirect-in", default);

        Assert.Equal("domain_not_allowed", outside.Error!.Code);
        Assert.Equal("hello from the target", (string)inside.Result!["body"]!);
    }

    [Fact]
    public async Task Another_tenants_allow_list_does_not_apply()
    {
        using var tool = Tool(allowPrivate: true, "localhost");

        Assert.Equal("domain_not_allowed", (await tool.FetchAsync("globex", $"http://localhost:{_port}/hello", default)).Error!.Code);
    }
}
