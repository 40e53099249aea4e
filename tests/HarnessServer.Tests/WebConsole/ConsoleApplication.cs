using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace HarnessServer.Tests.WebConsole;

/// <summary>
/// One server on a real loopback port (browsers need one), the certified <c>oidc-provider</c> as the console's issuer
/// (a Node process running <c>oidc-provider.mjs</c>), and one headless Debian <c>chromium</c> driven by Playwright,
/// shared by every console test (an xunit collection fixture) to keep the browser suite fast.
/// </summary>
public sealed class ConsoleApplication : HarnessApplication
{
    public const string Tenant = "console";
    public const string ClientId = "harness-console";

    /// <summary>The security reviewer's tenant, whose chain a test tampers with (no other test reads it).</summary>
    public const string ReviewTenant = "console-review";
    /// <summary>The tenant whose seeded events the reviewer's search, export and checkpoint tests read.</summary>
    public const string SearchTenant = "console-search";

    /// <summary>The tenant that holds 100,000 audit events for the page-time test.</summary>
    public const string PerformanceTenant = "console-perf";
    private const string ClientSecret = "console-tests-client-secret";

    /// <summary>The admin pages' tenant, whose policies and settings the admin tests change (no other test reads it).</summary>
    public const string AdminTenant = "console-admin";

    /// <summary>The accounts of the issuer: a member, an approver of the same team, and a member of another team.</summary>
    public static readonly Dictionary<string, object> Accounts = new()
    {
        ["alice"] = new { name = "Alice Member", tid = Tenant, groups = new[] { "platform" }, roles = Array.Empty<string>() },
        ["bob"] = new { name = "Bob Approver", tid = Tenant, groups = new[] { "platform" }, roles = new[] { HarnessRoles.Approver } },
        ["carol"] = new { name = "Carol Elsewhere", tid = Tenant, groups = new[] { "design" }, roles = new[] { HarnessRoles.Approver } },
        ["rita"] = new { name = "Rita Reviewer", tid = ReviewTenant, groups = new[] { "security" }, roles = new[] { HarnessRoles.Auditor } },
        ["sam"] = new { name = "Sam Searcher", tid = SearchTenant, groups = new[] { "security" }, roles = new[] { HarnessRoles.Auditor } },
        ["percy"] = new { name = "Percy Timer", tid = PerformanceTenant, groups = new[] { "platform" }, roles = new[] { HarnessRoles.Auditor } },
        ["adam"] = new { name = "Adam Admin", tid = AdminTenant, groups = new[] { "platform" }, roles = new[] { HarnessRoles.Admin } },
        // An account whose id token names no tenant: the console must refuse it as the API refuses such a token.
        ["nobody"] = new { name = "No Tenant", groups = Array.Empty<string>(), roles = Array.Empty<string>() },
    };

    public const string OrgPolicy = """
        default: deny
        rules:
          - tool: "fs.read"
            effect: allow
          - tool: "fs.write"
            effect: ask
            args: { path: "**" }
            reason: "writes are reviewed by the team"
          - tool: "shell.exec"
            effect: allow
            args: { command: ["echo *", "cat *"] }
        """;

    private readonly int _port = FreePort();
    private readonly int _issuerPort = FreePort();
    private Process? _issuer;
    private IPlaywright? _playwright;

    /// <summary>The agent's model: an OpenAI-compatible server answering from a script the test sets.</summary>
    public ScriptedModelServer Model { get; private set; } = null!;

    public string Address => $"http://127.0.0.1:{_port}";
    public string IssuerAddress => $"http://127.0.0.1:{_issuerPort}";
    public IBrowser Browser { get; private set; } = null!;

    /// <summary>
    /// Where the tests write their screenshots: the test output folder, or <c>docs/screenshots</c> (which the README
    /// shows) when <c>HARNESS_SCREENSHOTS=docs</c>, so an ordinary run leaves the working tree as it was.
    /// </summary>
    public static string ScreenshotFolder =>
        Environment.GetEnvironmentVariable("HARNESS_SCREENSHOTS") == "docs"
            ? Path.Combine(RepositoryRoot, "docs", "screenshots")
            : Path.Combine(AppContext.BaseDirectory, "screenshots");

    protected override void Configure(IDictionary<string, string?> settings)
    {
        settings["Harness:Console:Authority"] = IssuerAddress;
        settings["Harness:Console:ClientId"] = ClientId;
        settings["Harness:Console:ClientSecret"] = ClientSecret;
        settings["Harness:Console:Scopes:0"] = "harness";
        settings["Harness:Console:RequireHttpsMetadata"] = "false";
        settings["Harness:Approvals:PollInterval"] = "00:00:00.200";
        settings["Harness:Model:Endpoint"] = Model.Endpoint;
        settings["Harness:Model:ApiKey"] = "test-key";
        settings["Harness:Model:Id"] = "scripted-model";
    }

    public override async Task InitializeAsync()
    {
        _issuer = StartIssuer();
        Model = await ScriptedModelServer.StartAsync();
        UseKestrel(options => options.Listen(IPAddress.Loopback, _port));
        var browser = StartBrowserAsync();
        await WaitForIssuerAsync();
        await base.InitializeAsync();
        var bound = Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        Assert.Equal(Address, bound.TrimEnd('/'));
        using var admin = Api("admin", [HarnessRoles.Admin]);
        var put = await admin.PutAsync("/v1/admin/policies/org", new StringContent(OrgPolicy, Encoding.UTF8, "application/yaml"));
        put.EnsureSuccessStatusCode();
        Browser = await browser;
    }

    /// <summary>A client of the API on the real port with a bearer token from the API's issuer.</summary>
    public HttpClient Api(string user, string[]? roles = null, string[]? teams = null, string tenant = Tenant)
    {
        var client = new HttpClient { BaseAddress = new Uri(Address) };
        client.DefaultRequestHeaders.Authorization =
            new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", Issuer.CreateToken(user, tenant, teams ?? ["platform"], roles));
        return client;
    }

    /// <summary>A fresh browser context (its own cookies), at the size given, collecting the page's console errors.</summary>
    public async Task<(IBrowserContext Context, IPage Page, List<string> Errors)> NewPageAsync(int width = 1280, int height = 800)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = Address,
            ViewportSize = new ViewportSize { Width = width, Height = height },
        });
        context.SetDefaultTimeout(15_000);
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        // Only the console's own pages count: the issuer's login pages are not the product.
        page.Console += (_, message) =>
        {
            if (message.Type == "error" && page.Url.StartsWith(Address, StringComparison.Ordinal))
            {
                lock (errors)
                {
                    errors.Add($"{page.Url}: {message.Text}");
                }
            }
        };
        page.PageError += (_, error) =>
        {
            if (page.Url.StartsWith(Address, StringComparison.Ordinal))
            {
                lock (errors)
                {
                    errors.Add($"{page.Url}: {error}");
                }
            }
        };
        return (context, page, errors);
    }

    /// <summary>Signs in through the issuer's own login and consent pages (the code flow with PKCE, end to end).</summary>
    public static async Task SignInAsync(IPage page, string login, string start = "/console/sessions")
    {
        await page.GotoAsync(start);
        await LogInAtIssuerAsync(page, login, url => url.AbsolutePath == start);
    }

    /// <summary>
    /// From the console's sign-in page: the issuer's login form, then its consent page when it shows one, until the
    /// browser is back where <paramref name="landed"/> says.
    /// </summary>
    public static async Task LogInAtIssuerAsync(IPage page, string login, Func<Uri, bool> landed)
    {
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in with your identity provider" }).ClickAsync();
        await page.Locator("input[name=login]").FillAsync(login);
        await page.Locator("input[name=password]").FillAsync("any password");
        await page.Locator("button[type=submit]").ClickAsync();
        // The login and consent pages share the /interaction/ path, so wait for either the consent button or the
        // console, whichever comes: the consent page is the only one with a 'Continue' button.
        var consent = page.Locator("button:has-text('Continue')");
        var back = page.WaitForURLAsync(url => landed(new Uri(url)));
        var asked = consent.WaitForAsync(new() { State = WaitForSelectorState.Visible });
        if (await Task.WhenAny(back, asked) == asked && !back.IsCompleted)
        {
            await consent.ClickAsync();
        }

        await back;
    }

    private Process StartIssuer()
    {
        var module = Path.Combine(RepositoryRoot, ".data", "tools", "oidc-provider", "node_modules", "oidc-provider", "lib", "index.js");
        if (!File.Exists(module))
        {
            throw new InvalidOperationException($"oidc-provider is not installed at {module}; run scripts/provision.sh.");
        }

        var start = new ProcessStartInfo("node", [Path.Combine(AppContext.BaseDirectory, "WebConsole", "oidc-provider.mjs")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["OIDC_PROVIDER_MODULE"] = module;
        start.Environment["OIDC_PORT"] = _issuerPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["OIDC_CLIENT"] = JsonSerializer.Serialize(new
        {
            client_id = ClientId,
            client_secret = ClientSecret,
            redirect_uris = new[] { $"{Address}/console/signin-oidc" },
        });
        start.Environment["OIDC_ACCOUNTS"] = JsonSerializer.Serialize(Accounts);
        var process = Process.Start(start) ?? throw new InvalidOperationException("node did not start");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private async Task WaitForIssuerAsync()
    {
        using var http = new HttpClient();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            try
            {
                var discovery = await http.GetAsync($"{IssuerAddress}/.well-known/openid-configuration");
                if (discovery.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException) when (DateTime.UtcNow < deadline && _issuer is { HasExited: false })
            {
            }

            if (DateTime.UtcNow >= deadline || _issuer is not { HasExited: false })
            {
                throw new InvalidOperationException("oidc-provider did not serve its discovery document.");
            }

            await Task.Delay(50);
        }
    }

    private async Task<IBrowser> StartBrowserAsync()
    {
        _playwright = await Playwright.CreateAsync();
        return await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            // Debian's chromium (scripts/provision.sh installs it); Playwright never downloads a browser here.
            ExecutablePath = "/usr/bin/chromium",
            Headless = true,
        });
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public override async ValueTask DisposeAsync()
    {
        if (Browser is not null)
        {
            await Browser.DisposeAsync();
        }

        _playwright?.Dispose();
        if (_issuer is { HasExited: false })
        {
            _issuer.Kill(entireProcessTree: true);
            await _issuer.WaitForExitAsync();
        }

        _issuer?.Dispose();
        await base.DisposeAsync();
        if (Model is not null)
        {
            await Model.DisposeAsync();
        }
    }
}

[CollectionDefinition(Name)]
public sealed class ConsoleCollection : ICollectionFixture<ConsoleApplication>
{
    public const string Name = "console";
}
