using System.ClientModel;
using HarnessServer.Tests.Infrastructure;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.Connectors.OpenAI;
using OpenAI;

namespace HarnessServer.Tests.Agents;

/// <summary>The scripted server speaks the wire format Semantic Kernel's OpenAI connector reads, streamed or not.</summary>
public sealed class ScriptedModelServerTests : IAsyncLifetime
{
    private ScriptedModelServer _server = null!;
    private IChatCompletionService _chat = null!;

    public async Task InitializeAsync()
    {
        _server = await ScriptedModelServer.StartAsync();
        var client = new OpenAIClient(new ApiKeyCredential("test"), new OpenAIClientOptions
        {
            Endpoint = new Uri(_server.Endpoint),
            // The OpenAI client retries 5xx itself; the server under test leaves that to its resilience handler.
            RetryPolicy = new System.ClientModel.Primitives.ClientRetryPolicy(maxRetries: 0),
        });
        _chat = new OpenAIChatCompletionService("scripted", client);
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task Streamed_text_and_tool_calls_reassemble()
    {
        _server.Reply("Hello from a streamed reply.").Call("fs_read", new { path = "a.txt" });

        var text = string.Concat(await _chat.GetStreamingChatMessageContentsAsync(new ChatHistory("hi")).Select(u => u.Content).ToListAsync());
        var builder = new FunctionCallContentBuilder();
        await foreach (var update in _chat.GetStreamingChatMessageContentsAsync(new ChatHistory("hi")))
        {
            builder.Append(update);
        }

        Assert.Equal("Hello from a streamed reply.", text);
        var call = Assert.Single(builder.Build());
        Assert.Equal("fs_read", call.FunctionName);
        Assert.Equal("a.txt", call.Arguments!["path"]?.ToString());
        Assert.True(_server.Requests[0].GetProperty("stream").GetBoolean());
    }

    [Fact]
    public async Task Plain_responses_carry_calls_and_usage()
    {
        _server.Calls([("fs_read", new { path = "a" }), ("fs_list", new { path = "." })], promptTokens: 11, completionTokens: 3);

        var message = await _chat.GetChatMessageContentAsync(new ChatHistory("hi"));

        var completion = Assert.IsType<OpenAI.Chat.ChatCompletion>(message.InnerContent);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, completion.FinishReason);
        Assert.Equal(["fs_read", "fs_list"], completion.ToolCalls.Select(c => c.FunctionName));
        Assert.Equal(11, completion.Usage.InputTokenCount);
        Assert.Equal(3, completion.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task Scripted_failures_answer_their_status()
    {
        _server.Fail(500).Reply("ok");

        var failure = await Assert.ThrowsAsync<HttpOperationException>(() => _chat.GetChatMessageContentAsync(new ChatHistory("hi")));

        Assert.Equal(System.Net.HttpStatusCode.InternalServerError, failure.StatusCode);
    }
}
