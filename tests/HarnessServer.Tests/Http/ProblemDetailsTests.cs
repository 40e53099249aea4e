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

    [Theory]
    [InlineData("PUT", "/v1/admin/agent-settings", "{\"memoryRetrieval\": \"yes\"}")]
    [InlineData("PUT", "/v1/admin/agent-settings", "{\"memoryItems\": 1.5}")]
    [InlineData("PUT", "/v1/admin/http-fetch/domains", "{\"domains\": \"example.com\"}")]
    [InlineData("PUT", "/v1/admin/http-fetch/domains", "{\"domains\": [1]}")]
    [InlineData("PUT", "/v1/admin/http-fetch/domains", "not json")]
    [InlineData("POST", "/v1/approvals/00000000-0000-0000-0000-000000000001/decision", "{\"approve\": \"sure\"}")]
    [InlineData("POST", "/v1/memory/org/items", "{\"content\": 5}")]
    public async Task A_body_of_the_wrong_shape_is_a_400_problem_never_a_500(string method, string url, string body)
    {
        using var client = app.ClientFor("root", "shapes", roles: ["harness.admin", "harness.approver"]);
        using var request = new HttpRequestMessage(new HttpMethod(method), url) { Content = new StringContent(body, Encoding.UTF8, "application/json") };

        var problem = await ProblemAsync(await client.SendAsync(request), HttpStatusCode.BadRequest);

        Assert.False(string.IsNullOrWhiteSpace(problem.GetProperty("detail").GetString()));
        Assert.DoesNotContain("   at ", problem.ToString());
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
        // This machine kind is a root server on a cgroup v1 host: the sandbox's limits are held by a group per call.
        Assert.Contains("limits: cgroup v1 (memory, pids", body.GetProperty("checks").GetProperty("sandbox").GetProperty("description").GetString());
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
