using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace HarnessServer.Tests.Mcp;

/// <summary>
/// The server on a real loopback port (Kestrel), so an MCP client in another process can reach <c>/mcp</c>, with one
/// tenant whose org, team and user levels give three users three different matrices.
/// </summary>
public sealed class McpApplication : HarnessApplication
{
    public const string Tenant = "mcp";

    public const string OrgPolicy = """
        default: deny
        rules:
          - tool: "fs.read"
            effect: allow
          - tool: "fs.list"
            effect: allow
          - tool: "fs.write"
            effect: allow
            args: { path: "src/**" }
          - tool: "fs.write"
            effect: ask
            args: { path: "reviewed/**" }
            reason: "reviewed files need a second person"
          - tool: "shell.exec"
            effect: allow
            args: { command: ["echo *"] }
          - tool: "shell.exec"
            effect: deny
            args: { command: ["rm *"] }
            reason: "no deleting"
          - tool: "http.fetch"
            effect: deny
            locked: true
            reason: "no egress"
        """;

    // The security team may not write; its allow of http.fetch cannot lift the org's locked deny.
    public const string SecurityPolicy = """
        rules:
          - tool: "fs.write"
            effect: deny
            reason: "reviewers do not write"
          - tool: "http.fetch"
            effect: allow
        """;

    // lee may also search, and also tries (in vain) to allow http.fetch.
    public const string LeePolicy = """
        rules:
          - tool: "fs.search"
            effect: allow
          - tool: "http.fetch"
            effect: allow
        """;

    public string BaseUrl { get; private set; } = "";
    public string McpUrl => BaseUrl + "/mcp";

    protected override void Configure(IDictionary<string, string?> settings)
    {
        settings["Harness:Approvals:PollInterval"] = "00:00:00.200";
        settings["Harness:Mcp:ProgressInterval"] = "00:00:00.200";
    }

    public override async Task InitializeAsync()
    {
        UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
        await base.InitializeAsync();
        BaseUrl = Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');

        using var admin = Http(Issuer.CreateToken("admin", Tenant, roles: [HarnessRoles.Admin]));
        foreach (var (path, yaml) in new[] { ("org", OrgPolicy), ("teams/security", SecurityPolicy), ("users/lee", LeePolicy) })
        {
            var put = await admin.PutAsync($"/v1/admin/policies/{path}", new StringContent(yaml, Encoding.UTF8, "application/yaml"));
            Assert.True(put.IsSuccessStatusCode, $"PUT {path}: {(int)put.StatusCode} {await put.Content.ReadAsStringAsync()}");
        }
    }

    public string Token(string user, string[] teams, string[]? roles = null, string tenant = Tenant) =>
        Issuer.CreateToken(user, tenant, teams, roles);

    /// <summary>A client of the Kestrel address (not the in-memory test server) with this bearer token.</summary>
    public HttpClient Http(string? token)
    {
        var client = new HttpClient { BaseAddress = new Uri(BaseUrl) };
        if (token is not null)
        {
            client.DefaultRequestHeaders.Authorization = new("Bearer", token);
        }

        return client;
    }

    public async Task<Guid> NewSessionAsync(string token)
    {
        using var client = Http(token);
        var created = await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created);
        return created.GetProperty("id").GetGuid();
    }
}

/// <summary>Runs tests/HarnessServer.Tests/Mcp/mcp-client.mjs: the official TypeScript SDK as the MCP client.</summary>
public static class TypeScriptMcpClient
{
    public static string SdkDirectory { get; } = Path.Combine(HarnessApplication.RepositoryRoot, ".data", "tools", "mcp-sdk");

    /// <summary>
    /// Runs the clients of the plan at once and returns every line they wrote; <paramref name="onLine"/> sees each line
    /// as it arrives (while the calls are still open), so a test can act on a progress notification.
    /// </summary>
    public static async Task<List<JsonElement>> RunAsync(string url, object[] clients, Func<JsonElement, Task>? onLine = null)
    {
        Assert.True(File.Exists(Path.Combine(SdkDirectory, "node_modules", "@modelcontextprotocol", "sdk", "package.json")),
            $"The TypeScript MCP SDK is not installed under {SdkDirectory}; run scripts/provision.sh.");
        var start = new ProcessStartInfo("node", Path.Combine(AppContext.BaseDirectory, "Mcp", "mcp-client.mjs"))
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["MCP_SDK_DIR"] = SdkDirectory;
        using var node = Process.Start(start)!;
        var stderr = node.StandardError.ReadToEndAsync();
        await node.StandardInput.WriteAsync(JsonSerializer.Serialize(new { url, clients }));
        node.StandardInput.Close();

        var lines = new List<JsonElement>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            while (await node.StandardOutput.ReadLineAsync(timeout.Token) is { } text)
            {
                var line = JsonDocument.Parse(text).RootElement.Clone();
                lines.Add(line);
                if (onLine is not null)
                {
                    await onLine(line);
                }
            }

            await node.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            node.Kill(entireProcessTree: true);
            Assert.Fail($"The MCP client did not finish in 90 s. Lines: {string.Join('\n', lines)}\nstderr: {await stderr}");
        }

        Assert.True(node.ExitCode == 0, $"The MCP client exited {node.ExitCode}: {await stderr}");
        return lines;
    }
}
