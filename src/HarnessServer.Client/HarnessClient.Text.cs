using System.Net;
using System.Net.Http.Headers;
using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;

namespace HarnessServer.Client;

/// <summary>
/// The operations whose bodies are not JSON values, which the generator leaves out (see generator/KeepJsonOperations.cs):
/// a policy level's file (YAML or JSON text, its version as the ETag), the audit export (JSON Lines) and a session's
/// event stream (Server-Sent Events). Problems are thrown as the generated methods throw them.
/// </summary>
public partial class HarnessClient
{
    /// <summary>The level's stored file and version (<c>GET /v1/admin/policies/...</c>), or null when none is stored.</summary>
    public async Task<PolicyFile?> GetPolicyFileAsync(PolicyLevel level, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, level.Path);
        using var response = await _httpClient.SendAsync(request, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.NotFound && await ProblemCodeAsync(response, cancellationToken) == "policy_not_found")
        {
            return null;
        }

        await EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
        var content = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        return new PolicyFile(level, content, VersionOf(response.Headers.ETag));
    }

    /// <summary>
    /// Replaces the level (<c>PUT /v1/admin/policies/...</c>). With <paramref name="expectedVersion"/> the server
    /// answers 412 (thrown) when another version was stored since; with null it replaces whatever is stored.
    /// </summary>
    public async Task<PolicyVersionView> PutPolicyFileAsync(PolicyLevel level, string content, int? expectedVersion, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, level.Path);
        var json = content.TrimStart().StartsWith('{');
        request.Content = new StringContent(content, Encoding.UTF8, json ? "application/json" : "application/yaml");
        if (expectedVersion is { } version)
        {
            request.Headers.IfMatch.Add(new EntityTagHeaderValue($"\"{version}\""));
        }

        using var response = await _httpClient.SendAsync(request, cancellationToken).ConfigureAwait(false);
        await EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        return await JsonSerializer.DeserializeAsync<PolicyVersionView>(body, JsonSerializerSettings, cancellationToken).ConfigureAwait(false)
               ?? throw new HarnessApiException("The server answered an empty policy version.", (int)response.StatusCode, null, Headers(response), null);
    }

    /// <summary>Copies the tenant's chain as JSON Lines (<c>GET /v1/audit/export</c>) into <paramref name="destination"/>.</summary>
    public async Task ExportAuditAsync(long? from, long? to, Stream destination, CancellationToken cancellationToken)
    {
        var query = new List<string>();
        if (from is { } f)
        {
            query.Add($"from={f}");
        }

        if (to is { } t)
        {
            query.Add($"to={t}");
        }

        var path = "v1/audit/export" + (query.Count > 0 ? "?" + string.Join('&', query) : "");
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        using var response = await _httpClient.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        await EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        await body.CopyToAsync(destination, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The session's tool-call status changes (<c>GET /v1/sessions/{id}/events</c>): first every call so far, then each
    /// change as it happens, until <paramref name="cancellationToken"/> stops the stream or the server ends it.
    /// </summary>
    public async IAsyncEnumerable<ToolCallEvent> StreamSessionEventsAsync(Guid id, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"v1/sessions/{id}/events");
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        using var response = await _httpClient.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        await EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        await foreach (var item in SseParser.Create(body).EnumerateAsync(cancellationToken).ConfigureAwait(false))
        {
            if (item.EventType == "tool_call" && JsonSerializer.Deserialize<ToolCallEvent>(item.Data, JsonSerializerSettings) is { } change)
            {
                yield return change;
            }
        }
    }

    private static int? VersionOf(EntityTagHeaderValue? etag) =>
        etag is not null && int.TryParse(etag.Tag.Trim('"'), out var version) ? version : null;

    private async Task EnsureSuccessAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        ProblemDetails? problem = null;
        try
        {
            problem = JsonSerializer.Deserialize<ProblemDetails>(text, JsonSerializerSettings);
        }
        catch (JsonException)
        {
            // Not a problem document (a proxy's page, say): the text travels in the exception as it is.
        }

        var status = (int)response.StatusCode;
        throw problem is null
            ? new HarnessApiException($"The server answered {status}.", status, text, Headers(response), null)
            : new HarnessApiException<ProblemDetails>(problem.Title ?? $"The server answered {status}.", status, text, Headers(response), problem, null);
    }

    private static async Task<string?> ProblemCodeAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        await response.Content.LoadIntoBufferAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false));
            return document.RootElement.TryGetProperty("code", out var code) ? code.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static Dictionary<string, IEnumerable<string>> Headers(HttpResponseMessage response) =>
        response.Headers.Concat(response.Content.Headers).ToDictionary(h => h.Key, h => h.Value);
}

/// <summary>A policy level as the admin routes name it: <c>org</c>, <c>team:NAME</c> or <c>user:ID</c>.</summary>
public sealed record PolicyLevel(string Kind, string? Name)
{
    public static PolicyLevel Org { get; } = new("org", null);

    public static PolicyLevel Team(string name) => new("team", name);

    public static PolicyLevel User(string id) => new("user", id);

    /// <summary>The route of this level, relative to the server's base address.</summary>
    public string Path => Kind switch
    {
        "org" => "v1/admin/policies/org",
        "team" => $"v1/admin/policies/teams/{Uri.EscapeDataString(Name!)}",
        _ => $"v1/admin/policies/users/{Uri.EscapeDataString(Name!)}",
    };

    public override string ToString() => Name is null ? Kind : $"{Kind}:{Name}";
}

/// <summary>A level's file as stored, and the version that <c>If-Match</c> names.</summary>
public sealed record PolicyFile(PolicyLevel Level, string Content, int? Version);

/// <summary>What a problem answer says, from either kind of exception the client throws.</summary>
public static class HarnessProblems
{
    /// <summary>The problem's stable <c>code</c>, its title and its detail (null where the answer was not a problem).</summary>
    public static (string? Code, string? Title, string? Detail) Describe(this HarnessApiException exception)
    {
        if (exception.Response is not { Length: > 0 } text)
        {
            return (null, null, null);
        }

        try
        {
            using var document = JsonDocument.Parse(text);
            var root = document.RootElement;
            return root.ValueKind != JsonValueKind.Object
                ? (null, null, null)
                : (Text(root, "code"), Text(root, "title"), Text(root, "detail"));
        }
        catch (JsonException)
        {
            return (null, null, null);
        }
    }

    private static string? Text(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
