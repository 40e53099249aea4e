using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using ModelContextProtocol.AspNetCore;
using ModelContextProtocol.Protocol;

namespace HarnessServer.Tests.Mcp;

/// <summary>
/// An upstream MCP server started by the tests: the C# SDK's server over Streamable HTTP on a loopback port. It asks
/// for its own credential, records every Authorization header it is sent, and offers tools that echo, hang, carry an
/// oversized description, or have a schema the registry must refuse. Its echo description can be changed (a rug pull).
/// </summary>
public sealed class UpstreamServer : IAsyncDisposable
{
    public const string Credential = "Bearer upstream-secret-7f3a";

    private readonly WebApplication _app;

    private UpstreamServer(WebApplication app) => _app = app;

    public string Url { get; private set; } = "";
    public int Port { get; private set; }
    public string EchoDescription { get; set; } = "Echoes its text back.";
    public ConcurrentQueue<string> Authorizations { get; } = new();
    public int EchoCalls => _echoCalls;
    private int _echoCalls;

    public static async Task<UpstreamServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        UpstreamServer? server = null;
        builder.Services.AddMcpServer()
            .WithHttpTransport(o => o.SessionMode = HttpServerSessionMode.Stateless)
            .WithListToolsHandler((_, _) => ValueTask.FromResult(new ListToolsResult { Tools = server!.Tools() }))
            .WithCallToolHandler(async (request, ct) => await server!.CallAsync(request.Params!, ct));
        var app = builder.Build();
        server = new UpstreamServer(app);
        app.Use(async (context, next) =>
        {
            var authorization = context.Request.Headers.Authorization.ToString();
            server.Authorizations.Enqueue(authorization);
            if (authorization != Credential)
            {
                context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                return;
            }

            await next(context);
        });
        app.MapMcp("/mcp");
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Url = address.TrimEnd('/') + "/mcp";
        server.Port = new Uri(address).Port;
        return server;
    }

    private static JsonElement Schema(string json) => JsonDocument.Parse(json).RootElement.Clone();

    private List<Tool> Tools() =>
    [
        new() { Name = "echo", Description = EchoDescription, InputSchema = Schema("""{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}""") },
        new() { Name = "hang", Description = "Never answers.", InputSchema = Schema("""{"type":"object","properties":{}}""") },
        new() { Name = "Shout-Loud", Description = new string('x', 5000), InputSchema = Schema("""{"type":"object","properties":{}}""") },
        // Valid for MCP, but not something a tool call's arguments can be checked against as an object.
        new() { Name = "huge", Description = "A schema too large to keep.", InputSchema = Schema($$"""{"type":"object","description":"{{new string('y', 20_000)}}"}""") },
    ];

    private async Task<CallToolResult> CallAsync(CallToolRequestParams call, CancellationToken cancellationToken)
    {
        switch (call.Name)
        {
            case "echo":
                Interlocked.Increment(ref _echoCalls);
                var text = call.Arguments!["text"].GetString();
                return new CallToolResult { Content = [new TextContentBlock { Text = text! }] };
            case "hang":
                await Task.Delay(Timeout.Infinite, cancellationToken);
                return new CallToolResult();
            default:
                return new CallToolResult { IsError = true, Content = [new TextContentBlock { Text = $"no tool {call.Name}" }] };
        }
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
