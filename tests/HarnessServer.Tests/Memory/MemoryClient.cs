using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace HarnessServer.Tests.Memory;

internal static class MemoryClient
{
    public static async Task<Guid> SaveAsync(this HttpClient client, string @namespace, string content, object? extra = null)
    {
        var response = await client.PostAsJsonAsync($"/v1/memory/{@namespace}/items", new { content });
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(@namespace, body.GetProperty("namespace").GetString());
        return body.GetProperty("id").GetGuid();
    }

    public static async Task<List<(Guid Id, string Content, double Score, string Namespace)>> SearchAsync(
        this HttpClient client, string @namespace, string query, int? k = null, string? mode = null)
    {
        var response = await client.PostAsJsonAsync($"/v1/memory/{@namespace}/search", new { query, k, mode });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return body.GetProperty("items").EnumerateArray()
            .Select(i => (i.GetProperty("id").GetGuid(), i.GetProperty("content").GetString()!, i.GetProperty("score").GetDouble(), i.GetProperty("namespace").GetString()!))
            .ToList();
    }
}
