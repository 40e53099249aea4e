using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Http;

/// <summary>
/// The OpenAPI document as its consumers read it: Redocly's recommended lint (installed by scripts/provision.sh) passes
/// with no error, every protected operation names the bearer scheme, and the problems routes answer are documented.
/// </summary>
public sealed class OpenApiDocumentTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private static readonly string Redocly = Path.Combine(HarnessApplication.RepositoryRoot, ".data", "tools", "redocly", "node_modules", ".bin", "redocly");

    [Fact]
    public async Task Redocly_recommended_lint_finds_no_error()
    {
        Assert.True(File.Exists(Redocly), $"{Redocly} is missing: scripts/provision.sh installs it.");
        using var client = app.CreateClient();
        var path = Path.Combine(app.DataRoot, "openapi.json");
        await File.WriteAllTextAsync(path, await client.GetStringAsync("/openapi/v1.json"));

        var (exit, output) = await RunAsync(Redocly, "lint", path, "--extends=recommended", "--format=stylish");

        Assert.True(exit == 0, $"redocly lint failed ({exit}):\n{output}");
    }

    [Fact]
    public async Task Every_protected_operation_names_the_bearer_scheme_and_its_problems()
    {
        using var client = app.CreateClient();
        var document = await client.GetFromJsonAsync<JsonElement>("/openapi/v1.json");
        var schemes = document.GetProperty("components").GetProperty("securitySchemes");
        Assert.Equal("bearer", schemes.GetProperty("bearer").GetProperty("scheme").GetString());

        // The MCP protected-resource metadata is public by definition (RFC 9728): it is how a client finds the issuer.
        var open = new HashSet<string>(StringComparer.Ordinal) { "/healthz", "/readyz", "/openapi/v1.json", "/.well-known/oauth-protected-resource/mcp" };
        foreach (var path in document.GetProperty("paths").EnumerateObject().Where(p => !open.Contains(p.Name)))
        {
            foreach (var operation in path.Value.EnumerateObject())
            {
                var where = $"{operation.Name.ToUpperInvariant()} {path.Name}";
                var op = operation.Value;
                Assert.True(op.TryGetProperty("summary", out _), $"{where} has no summary");
                var responses = op.GetProperty("responses");
                if (op.TryGetProperty("security", out var security) && security.GetArrayLength() > 0)
                {
                    Assert.True(security[0].TryGetProperty("bearer", out _), $"{where} does not name the bearer scheme");
                    Assert.True(responses.TryGetProperty("401", out var unauthorized), $"{where} documents no 401");
                    Assert.True(unauthorized.GetProperty("content").TryGetProperty("application/problem+json", out _), $"{where}: 401 is not a problem");
                }
                else
                {
                    Assert.Equal("/dev/token", path.Name); // the only anonymous route outside health and the document
                }
            }
        }
    }

    private static async Task<(int Exit, string Output)> RunAsync(string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["REDOCLY_TELEMETRY"] = "off";
        start.Environment["REDOCLY_SUPPRESS_UPDATE_NOTICE"] = "true";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout + await stderr);
    }
}
