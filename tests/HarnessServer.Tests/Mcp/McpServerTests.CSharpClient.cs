using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using HarnessServer.Tests.Infrastructure;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace HarnessServer.Tests.Mcp;

/// <summary>The same server driven by the C# SDK's client.</summary>
public sealed partial class McpServerTests
{
    private async Task<McpClient> CSharpClientAsync(string token, Guid? session = null)
    {
        var headers = new Dictionary<string, string> { ["Authorization"] = $"Bearer {token}" };
        if (session is { } id)
        {
            headers["Harness-Session"] = id.ToString();
        }

        return await McpClient.CreateAsync(new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = new Uri(app.McpUrl),
            TransportMode = HttpTransportMode.StreamableHttp,
            AdditionalHeaders = headers,
        }));
    }

    private static Dictionary<string, JsonElement> Arguments(object arguments) =>
        JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(JsonSerializer.Serialize(arguments))!;

    [Fact]
    public async Task CSharp_client_first_call_creates_a_session_named_in_meta_and_later_calls_join_it()
    {
        await using var client = await CSharpClientAsync(Maria);
        Assert.Equal(["fs.list", "fs.read", "fs.write", "shell.exec"], (await client.ListToolsAsync()).Select(t => t.Name));

        var write = await client.CallToolAsync(new CallToolRequestParams { Name = "fs.write", Arguments = Arguments(new { path = "src/first.txt", content = "one" }) });
        Assert.False(write.IsError ?? false);
        var session = Guid.Parse((string)write.Meta!["harness/sessionId"]!);

        var read = await client.CallToolAsync(new CallToolRequestParams
        {
            Name = "fs.read",
            Arguments = Arguments(new { path = "src/first.txt" }),
            Meta = new JsonObject { ["harness/sessionId"] = session.ToString() },
        });
        Assert.False(read.IsError ?? false);
        Assert.Equal("one", read.StructuredContent!.Value.GetProperty("content").GetString());
        Assert.Equal(session.ToString(), (string)read.Meta!["harness/sessionId"]!);

        // The session is maria's, with both calls, and nobody else's.
        using var maria = app.Http(Maria);
        var view = await (await maria.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(["fs.write", "fs.read"], view.GetProperty("toolCalls").EnumerateArray().Select(c => c.GetProperty("tool").GetString()));
        using var lee = app.Http(app.Token("lee", ["web"]));
        await (await lee.GetAsync($"/v1/sessions/{session}")).ProblemAsync(HttpStatusCode.NotFound, "session_not_found");
    }

    [Fact]
    public async Task CSharp_client_that_disconnects_while_held_finds_the_outcome_on_the_session()
    {
        var session = await app.NewSessionAsync(Maria);
        await using var client = await CSharpClientAsync(Maria, session);
        var waiting = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var leave = new CancellationTokenSource();
        var call = client.CallToolAsync("fs.write", new Dictionary<string, object?> { ["path"] = "reviewed/later.md", ["content"] = "later" },
            new SyncProgress(p => waiting.TrySetResult(p.Message ?? "")), cancellationToken: leave.Token).AsTask();

        var message = await waiting.Task.WaitAsync(TimeSpan.FromSeconds(30));
        leave.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);

        // The held call outlives the client: approved afterwards, it runs, and the session shows the outcome.
        var callId = Guid.Parse(CallInMessage().Match(message).Groups[1].Value);
        using var olga = app.Http(Olga);
        await (await olga.PostAsJsonAsync($"/v1/approvals/{ApprovalOf(message)}/decision", new { approve = true })).JsonAsync(HttpStatusCode.OK);
        using var maria = app.Http(Maria);
        Assert.Equal("succeeded", await maria.WaitForCallStatusAsync(session, callId, "succeeded"));
    }

    [GeneratedRegex("call ([0-9a-f-]{36})")]
    private static partial Regex CallInMessage();

    // Progress<T> posts to the thread pool; this reports on the notification's own thread, in order.
    private sealed class SyncProgress(Action<ProgressNotificationValue> report) : IProgress<ProgressNotificationValue>
    {
        public void Report(ProgressNotificationValue value) => report(value);
    }
}
