using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace HarnessServer.Tests.Infrastructure;

public static class HttpAssertions
{
    /// <summary>Asserts the status and returns the JSON body.</summary>
    public static async Task<JsonElement> JsonAsync(this HttpResponseMessage response, HttpStatusCode expected)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"Expected {(int)expected} but got {(int)response.StatusCode}: {text}");
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>Asserts an RFC 7807 problem with this status (and code, when given) and returns it.</summary>
    public static async Task<JsonElement> ProblemAsync(this HttpResponseMessage response, HttpStatusCode expected, string? code = null)
    {
        var problem = await response.JsonAsync(expected);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal((int)expected, problem.GetProperty("status").GetInt32());
        if (code is not null)
        {
            Assert.Equal(code, problem.GetProperty("code").GetString());
        }

        return problem;
    }

    /// <summary>
    /// Polls the session's history (up to 10 s) until the call reaches one of <paramref name="statuses"/>, and returns
    /// the last status seen, for calls that finish in the background (approved calls).
    /// </summary>
    public static async Task<string?> WaitForCallStatusAsync(this HttpClient client, Guid session, Guid call, params string[] statuses)
    {
        string? status = null;
        for (var i = 0; i < 100 && !statuses.Contains(status); i++)
        {
            var view = await (await client.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
            status = view.GetProperty("toolCalls").EnumerateArray().Single(c => c.GetProperty("id").GetGuid() == call).GetProperty("status").GetString();
            if (!statuses.Contains(status))
            {
                await Task.Delay(100);
            }
        }

        return status;
    }

    public static Task<HttpResponseMessage> PostJsonAsync(this HttpClient client, string url, object body) =>
        client.PostAsJsonAsync(url, body);
}
