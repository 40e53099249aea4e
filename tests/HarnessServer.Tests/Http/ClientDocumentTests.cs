using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Http;

/// <summary>
/// The typed client (src/HarnessServer.Client) is generated at build from the document checked in beside it, so that
/// document must be the one the server serves: a route, a body or a status changed on one side only fails here.
/// <c>HARNESS_UPDATE_OPENAPI=1</c> rewrites the checked-in file from the live document (scripts/update-openapi.sh).
/// </summary>
public sealed class ClientDocumentTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    public static readonly string CheckedIn = Path.Combine(HarnessApplication.RepositoryRoot, "src", "HarnessServer.Client", "openapi.json");

    // The issuer of a test host listens on a random port; the checked-in document names a fixed one.
    private const string IssuerPlaceholder = "https://issuer.example";

    [Fact]
    public async Task Checked_in_document_is_the_one_the_server_serves()
    {
        using var client = app.CreateClient();
        var live = (await client.GetStringAsync("/openapi/v1.json")).Replace(app.Issuer.Authority, IssuerPlaceholder, StringComparison.Ordinal)
            .ReplaceLineEndings("\n");
        if (Environment.GetEnvironmentVariable("HARNESS_UPDATE_OPENAPI") == "1")
        {
            await File.WriteAllTextAsync(CheckedIn, live);
        }

        var stored = File.Exists(CheckedIn) ? (await File.ReadAllTextAsync(CheckedIn)).ReplaceLineEndings("\n") : "";
        Assert.True(stored == live,
            $"{CheckedIn} differs from the served /openapi/v1.json; run scripts/update-openapi.sh and rebuild the client.\n" +
            FirstDifference(stored, live));
    }

    private static string FirstDifference(string stored, string live)
    {
        var a = stored.Split('\n');
        var b = live.Split('\n');
        for (var i = 0; i < Math.Max(a.Length, b.Length); i++)
        {
            var left = i < a.Length ? a[i] : "<end>";
            var right = i < b.Length ? b[i] : "<end>";
            if (left != right)
            {
                return $"line {i + 1}: checked in '{left.Trim()}', served '{right.Trim()}'";
            }
        }

        return "";
    }
}
