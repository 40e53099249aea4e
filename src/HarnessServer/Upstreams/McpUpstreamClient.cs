using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Sandbox;
using HarnessServer.Tools;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace HarnessServer.Upstreams;

/// <summary>Where a stdio upstream runs: a workspace folder and the tenant's unprivileged host user.</summary>
internal sealed record SandboxPlace(string WorkspacePath, SandboxUser User);

/// <summary>
/// Talks to an upstream MCP server with the C# SDK's client: Streamable HTTP with the tenant's credential (never the
/// caller's token), or a stdio command inside a bubblewrap sandbox with no network. One connection per list or call,
/// cut at the registration's time limit. Anything the upstream does wrong is a failed outcome, never an exception.
/// </summary>
internal sealed class McpUpstreamClient(IHttpClientFactory http, UpstreamCredentials credentials, BubblewrapSandbox sandbox, ILoggerFactory loggers)
{
    public const string HttpClientName = "mcp-upstreams";

    /// <summary>Upstream error text kept in a result; the rest is cut (it is untrusted and may be large).</summary>
    private const int MaxErrorText = 2000;

    /// <summary>The largest result (as JSON) kept from an upstream call, as large as a sandboxed command's output.</summary>
    private const int MaxResultChars = 1024 * 1024;

    /// <summary>The upstream's tools (at most <see cref="UpstreamLimits.MaxTools"/>), or why they could not be listed.</summary>
    public async Task<(IReadOnlyList<Tool>? Tools, string? Error)> ListToolsAsync(McpUpstream upstream, SandboxPlace? place, CancellationToken cancellationToken)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(TimeSpan.FromSeconds(upstream.TimeoutSeconds));
        try
        {
            await using var connection = await ConnectAsync(upstream, place, limit.Token);
            var tools = new List<Tool>();
            string? cursor = null;
            do
            {
                var page = await connection.Client.ListToolsAsync(new ListToolsRequestParams { Cursor = cursor }, limit.Token);
                tools.AddRange(page.Tools);
                cursor = page.NextCursor;
            }
            while (cursor is not null && tools.Count <= UpstreamLimits.MaxTools);

            return (tools, null);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return (null, $"The upstream did not list its tools within {upstream.TimeoutSeconds} s.");
        }
        catch (Exception e) when (IsUpstreamFault(e))
        {
            return (null, Cut(e.Message));
        }
    }

    /// <summary>Calls <paramref name="tool"/> upstream with arguments the pipeline has validated and decided.</summary>
    public async Task<ToolOutcome> CallAsync(McpUpstream upstream, string tool, JsonElement arguments, SandboxPlace? place, CancellationToken cancellationToken)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(TimeSpan.FromSeconds(upstream.TimeoutSeconds));
        try
        {
            await using var connection = await ConnectAsync(upstream, place, limit.Token);
            var result = await connection.Client.CallToolAsync(new CallToolRequestParams
            {
                Name = tool,
                Arguments = arguments.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone()),
            }, limit.Token);
            var node = new JsonObject
            {
                ["content"] = JsonSerializer.SerializeToNode(result.Content, McpJsonUtilities.DefaultOptions),
                ["structuredContent"] = result.StructuredContent is { } structured ? JsonNode.Parse(structured.GetRawText()) : null,
            };
            // Stored with the call and audited: an upstream does not get to fill the database.
            if (node.ToJsonString().Length > MaxResultChars)
            {
                return ToolOutcome.Failure("upstream_result_too_large",
                    $"The upstream MCP server '{upstream.Name}' answered more than {MaxResultChars} characters of JSON; the result was dropped.");
            }

            return result.IsError == true
                ? ToolOutcome.Failure("upstream_tool_error", Cut($"{upstream.Name}/{tool} reported an error: {Text(result)}"), node)
                : ToolOutcome.Success(node);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return ToolOutcome.Failure("upstream_timeout",
                $"The upstream MCP server '{upstream.Name}' did not answer within its time limit of {upstream.TimeoutSeconds} s; the call was cut off.");
        }
        catch (Exception e) when (IsUpstreamFault(e))
        {
            return ToolOutcome.Failure("upstream_failed", Cut($"The upstream MCP server '{upstream.Name}' failed: {e.Message}"));
        }
    }

    private async Task<UpstreamConnection> ConnectAsync(McpUpstream upstream, SandboxPlace? place, CancellationToken cancellationToken)
    {
        var options = new McpClientOptions { ClientInfo = new Implementation { Name = "HarnessServer", Version = "1.0" } };
        if (upstream.Transport == McpTransport.Http)
        {
            var headers = new Dictionary<string, string>();
            if (upstream.ProtectedCredential is { } protectedCredential)
            {
                headers["Authorization"] = credentials.Unprotect(upstream.TenantId, upstream.Name, protectedCredential);
            }

            var transport = new HttpClientTransport(new HttpClientTransportOptions
            {
                Endpoint = new Uri(upstream.Url!),
                TransportMode = HttpTransportMode.StreamableHttp,
                AdditionalHeaders = headers,
                Name = upstream.Name,
            }, http.CreateClient(HttpClientName), loggers, ownsHttpClient: true);
            return new UpstreamConnection(await McpClient.CreateAsync(transport, options, loggers, cancellationToken), null);
        }

        var target = place ?? throw new InvalidOperationException($"The stdio upstream '{upstream.Name}' needs a sandbox place.");
        var process = await sandbox.StartAsync(new SandboxCommand
        {
            WorkspacePath = target.WorkspacePath,
            User = target.User,
            Argv = upstream.Command!,
            TimeoutSeconds = upstream.TimeoutSeconds,
        }, cancellationToken);
        try
        {
            var client = await McpClient.CreateAsync(new StreamClientTransport(process.Input, process.Output, loggers), options, loggers, cancellationToken);
            return new UpstreamConnection(client, process);
        }
        catch (Exception e) when (IsUpstreamFault(e))
        {
            var errors = await process.ErrorsAsync();
            await process.DisposeAsync();
            throw new IOException(string.IsNullOrWhiteSpace(errors) ? e.Message : $"{e.Message} (stderr: {errors.Trim()})", e);
        }
    }

    private static bool IsUpstreamFault(Exception e) =>
        e is HttpRequestException or McpException or IOException or JsonException or TimeoutException or InvalidOperationException
            or SandboxException or UriFormatException or System.Security.Cryptography.CryptographicException;

    private static string Text(CallToolResult result) =>
        string.Join(" ", result.Content.OfType<TextContentBlock>().Select(t => t.Text)) is { Length: > 0 } text ? text : "no text";

    private static string Cut(string text) => text.Length <= MaxErrorText ? text : text[..MaxErrorText] + " [cut]";

    private sealed class UpstreamConnection(McpClient client, SandboxedProcess? process) : IAsyncDisposable
    {
        public McpClient Client { get; } = client;

        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            if (process is not null)
            {
                await process.DisposeAsync();
            }
        }
    }
}
