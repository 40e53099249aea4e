using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Http;

public sealed class ProblemDetailsTests(ProblemDetailsTests.SmallBodyApplication app) : IClassFixture<ProblemDetailsTests.SmallBodyApplication>
{
    public sealed class SmallBodyApplication : HarnessApplication
    {
        protected override void Configure(IDictionary<string, string?> settings) =>
            settings["Harness:MaxRequestBodyBytes"] = "1024";
    }

    [Fact]
    public async Task Unknown_route_is_404_problem()
    {
        using var client = app.ClientFor("alice", "acme");

        var problem = await ProblemAsync(await client.GetAsync("/v1/nothing-here"), HttpStatusCode.NotFound);

        Assert.Equal("No resource matches GET /v1/nothing-here.", problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Wrong_method_is_405_problem_naming_allowed_methods()
    {
        using var client = app.ClientFor("alice", "acme");

        var problem = await ProblemAsync(await client.DeleteAsync("/v1/me"), HttpStatusCode.MethodNotAllowed);

        Assert.Contains("DELETE is not allowed on /v1/me", problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Body_over_the_limit_is_413_problem()
    {
        using var client = app.ClientFor("alice", "acme");
        using var content = new StringContent(new string('x', 4096), Encoding.UTF8, "application/json");

        var problem = await ProblemAsync(await client.PostAsync("/v1/me", content), HttpStatusCode.RequestEntityTooLarge);

        Assert.Contains("limit is 1024 bytes", problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Health_is_anonymous_and_ready_checks_pgvector()
    {
        using var client = app.CreateClient();

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz")).StatusCode);
        var ready = await client.GetAsync("/readyz");
        var body = await ready.Content.ReadFromJsonAsync<JsonElement>();

        Assert.True(ready.StatusCode == HttpStatusCode.OK, body.GetRawText());
        Assert.StartsWith("PostgreSQL reachable, pgvector", body.GetProperty("checks").GetProperty("database").GetProperty("description").GetString());
    }

    [Fact]
    public async Task OpenApi_document_lists_the_routes()
    {
        using var client = app.CreateClient();

        var document = await client.GetFromJsonAsync<JsonElement>("/openapi/v1.json");

        Assert.True(document.GetProperty("paths").TryGetProperty("/v1/me", out _));
    }

    internal static async Task<JsonElement> ProblemAsync(HttpResponseMessage response, HttpStatusCode expected)
    {
        Assert.Equal(expected, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal((int)expected, problem.GetProperty("status").GetInt32());
        Assert.DoesNotContain("   at ", problem.GetRawText());
        return problem;
    }
}
