using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Sessions;

/// <summary>
/// <c>GET /v1/sessions/{id}/events</c> commits its <c>200</c> only once the stream can start: a refusal before that is
/// a problem response (also for an EventSource, which accepts only <c>text/event-stream</c>), and an allowed stream
/// answers its headers at once, before the session has any call.
/// </summary>
public sealed class SessionEventStreamTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private const string Tenant = "streams";

    private static HttpRequestMessage EventSourceRequest(Guid session) => new(HttpMethod.Get, $"/v1/sessions/{session}/events")
    {
        Headers = { Accept = { new MediaTypeWithQualityHeaderValue("text/event-stream") } },
    };

    private async Task<Guid> NewSessionAsync(string user)
    {
        using var client = app.ClientFor(user, Tenant);
        return (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
    }

    [Fact]
    public async Task A_stream_of_a_session_without_calls_answers_its_headers_at_once_and_then_carries_calls()
    {
        using var client = app.ClientFor("olga", Tenant);
        var session = await NewSessionAsync("olga");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));

        using var stream = await client.SendAsync(EventSourceRequest(session), HttpCompletionOption.ResponseHeadersRead, timeout.Token);

        Assert.Equal(HttpStatusCode.OK, stream.StatusCode);
        Assert.Equal("text/event-stream", stream.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync(timeout.Token));
        var call = await (await client.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls",
            new { tool = "fs.write", arguments = new { path = "a.txt", content = "x" } }, timeout.Token)).Content.ReadFromJsonAsync<JsonElement>(timeout.Token);
        while (await reader.ReadLineAsync(timeout.Token) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                Assert.Equal(call.GetProperty("id").GetGuid(), JsonDocument.Parse(line["data: ".Length..]).RootElement.GetProperty("id").GetGuid());
                return;
            }
        }

        Assert.Fail("The stream ended before the call's event.");
    }

    [Fact]
    public async Task An_event_source_asking_for_another_users_session_gets_a_404_problem_not_a_stream()
    {
        var session = await NewSessionAsync("olga");
        using var other = app.ClientFor("mallory", Tenant);

        using var response = await other.SendAsync(EventSourceRequest(session));

        var problem = await response.ProblemAsync(HttpStatusCode.NotFound, "session_not_found");
        Assert.Contains(session.ToString(), problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task An_event_source_without_a_token_gets_a_401_problem_not_a_stream()
    {
        var session = await NewSessionAsync("olga");
        using var anonymous = app.CreateClient();

        using var response = await anonymous.SendAsync(EventSourceRequest(session));

        await response.ProblemAsync(HttpStatusCode.Unauthorized);
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
    }
}
