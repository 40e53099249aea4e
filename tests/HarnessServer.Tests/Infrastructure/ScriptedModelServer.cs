using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace HarnessServer.Tests.Infrastructure;

/// <summary>
/// An OpenAI-compatible chat completions server on a loopback port that answers from a script: a queue of steps,
/// each a text reply, one or several tool calls, or an HTTP failure. It speaks both the plain JSON response and the
/// streamed one (<c>"stream": true</c>: SSE <c>data: {chunk}</c> lines ending with <c>data: [DONE]</c>), with
/// <c>usage</c> in both, and records every request body it received so tests can assert what the model was
/// offered and sent. An empty script answers 400 (not retried by resilience handlers), so a test that scripted too
/// few steps fails fast instead of waiting on retries.
/// </summary>
public sealed class ScriptedModelServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Queue<Step> _script = new();
    private readonly List<JsonElement> _requests = [];
    private readonly SemaphoreSlim _received = new(0);
    private Func<JsonElement, ScriptedAnswer>? _otherwise;
    private int _callIds;

    private ScriptedModelServer(WebApplication app) => _app = app;

    /// <summary>The base URL to configure as <c>Harness:Model:Endpoint</c> (ends with <c>/v1</c>).</summary>
    public string Endpoint { get; private set; } = "";

    /// <summary>Every request body received, oldest first (failed attempts included).</summary>
    public IReadOnlyList<JsonElement> Requests
    {
        get
        {
            lock (_requests)
            {
                return [.. _requests];
            }
        }
    }

    public static async Task<ScriptedModelServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var server = new ScriptedModelServer(app);
        app.MapPost("/v1/chat/completions", server.AnswerAsync);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Endpoint = address.TrimEnd('/') + "/v1";
        return server;
    }

    /// <summary>The model answers with text and no call.</summary>
    public ScriptedModelServer Reply(string text, int promptTokens = 20, int completionTokens = 8) =>
        Enqueue(new Step(text, [], null, promptTokens, completionTokens, null));

    /// <summary>The model proposes one call; <paramref name="arguments"/> is serialised as the JSON arguments string.</summary>
    public ScriptedModelServer Call(string function, object arguments, int promptTokens = 20, int completionTokens = 8) =>
        Calls([(function, arguments)], promptTokens, completionTokens);

    /// <summary>The model proposes several calls in one response.</summary>
    public ScriptedModelServer Calls(IReadOnlyList<(string Function, object Arguments)> calls, int promptTokens = 20, int completionTokens = 8) =>
        Enqueue(new Step(null, calls.Select(c => new ScriptedCall(
            $"call_{Interlocked.Increment(ref _callIds)}", c.Function,
            c.Arguments as string ?? JsonSerializer.Serialize(c.Arguments))).ToList(), null, promptTokens, completionTokens, null));

    /// <summary>The next <paramref name="times"/> requests fail with <paramref name="status"/> (e.g. 429, 500).</summary>
    public ScriptedModelServer Fail(int status, int times = 1)
    {
        for (var i = 0; i < times; i++)
        {
            Enqueue(new Step(null, [], status, 0, 0, null));
        }

        return this;
    }

    /// <summary>
    /// Answers every request the script has no step for from <paramref name="answer"/>, given the request body: many
    /// concurrent turns (the soak) share one model, and a queue cannot say whose turn a step is for.
    /// </summary>
    public ScriptedModelServer Otherwise(Func<JsonElement, ScriptedAnswer> answer)
    {
        _otherwise = answer;
        return this;
    }

    /// <summary>The model answers with text only once <paramref name="release"/> completes (to hold a turn open).</summary>
    public ScriptedModelServer ReplyWhen(Task release, string text) =>
        Enqueue(new Step(text, [], null, 20, 8, release));

    /// <summary>The step scripted last is answered only once <paramref name="release"/> completes.</summary>
    public ScriptedModelServer HeldUntil(Task release)
    {
        lock (_script)
        {
            var steps = _script.ToArray();
            steps[^1] = steps[^1] with { Release = release };
            _script.Clear();
            foreach (var step in steps)
            {
                _script.Enqueue(step);
            }
        }

        return this;
    }

    /// <summary>Waits until at least <paramref name="count"/> requests arrived and returns the last of them.</summary>
    public async Task<JsonElement> WaitForRequestsAsync(int count, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (true)
        {
            lock (_requests)
            {
                if (_requests.Count >= count)
                {
                    return _requests[^1];
                }
            }

            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !await _received.WaitAsync(left))
            {
                throw new TimeoutException($"The model received {Requests.Count} requests, not {count}.");
            }
        }
    }

    /// <summary>Forgets the script and the recorded requests (between tests sharing one server).</summary>
    public void Reset()
    {
        lock (_script)
        {
            _script.Clear();
        }

        lock (_requests)
        {
            _requests.Clear();
        }

        while (_received.CurrentCount > 0)
        {
            _received.Wait(0);
        }
    }

    /// <summary>Steps not consumed yet.</summary>
    public int Remaining
    {
        get
        {
            lock (_script)
            {
                return _script.Count;
            }
        }
    }

    private ScriptedModelServer Enqueue(Step step)
    {
        lock (_script)
        {
            _script.Enqueue(step);
        }

        return this;
    }

    private async Task AnswerAsync(HttpContext context)
    {
        var body = await JsonDocument.ParseAsync(context.Request.Body);
        lock (_requests)
        {
            _requests.Add(body.RootElement.Clone());
        }

        _received.Release();
        Step? step;
        lock (_script)
        {
            _script.TryDequeue(out step);
        }

        if (step is null && _otherwise is { } otherwise)
        {
            var answer = otherwise(body.RootElement);
            step = new Step(answer.Text, answer.Calls.Select(c => new ScriptedCall(
                $"call_{Interlocked.Increment(ref _callIds)}", c.Function, JsonSerializer.Serialize(c.Arguments))).ToList(), null, 20, 8, null);
        }

        if (step is null)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            await context.Response.WriteAsJsonAsync(new { error = new { message = "The test script has no step left.", type = "invalid_request_error" } });
            return;
        }

        if (step.Release is { } release)
        {
            await release.WaitAsync(TimeSpan.FromSeconds(60));
        }

        if (step.Status is { } status)
        {
            context.Response.StatusCode = status;
            await context.Response.WriteAsJsonAsync(new { error = new { message = $"Scripted failure {status}.", type = "server_error" } });
            return;
        }

        var model = body.RootElement.TryGetProperty("model", out var m) ? m.GetString() ?? "scripted" : "scripted";
        var stream = body.RootElement.TryGetProperty("stream", out var s) && s.ValueKind == JsonValueKind.True;
        if (stream)
        {
            await StreamAsync(context, step, model);
        }
        else
        {
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(Completion(step, model).ToJsonString());
        }
    }

    private static JsonObject Usage(Step step) => new()
    {
        ["prompt_tokens"] = step.PromptTokens,
        ["completion_tokens"] = step.CompletionTokens,
        ["total_tokens"] = step.PromptTokens + step.CompletionTokens,
    };

    private static string FinishReason(Step step) => step.Calls.Count > 0 ? "tool_calls" : "stop";

    private static JsonObject Completion(Step step, string model)
    {
        var message = new JsonObject { ["role"] = "assistant", ["content"] = step.Text };
        if (step.Calls.Count > 0)
        {
            message["tool_calls"] = new JsonArray([.. step.Calls.Select(c => (JsonNode)new JsonObject
            {
                ["id"] = c.Id,
                ["type"] = "function",
                ["function"] = new JsonObject { ["name"] = c.Function, ["arguments"] = c.Arguments },
            })]);
        }

        return new JsonObject
        {
            ["id"] = $"chatcmpl-{Guid.NewGuid():N}",
            ["object"] = "chat.completion",
            ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            ["model"] = model,
            ["choices"] = new JsonArray(new JsonObject
            {
                ["index"] = 0,
                ["message"] = message,
                ["logprobs"] = null,
                ["finish_reason"] = FinishReason(step),
            }),
            ["usage"] = Usage(step),
        };
    }

    private static async Task StreamAsync(HttpContext context, Step step, string model)
    {
        context.Response.ContentType = "text/event-stream";
        var id = $"chatcmpl-{Guid.NewGuid():N}";
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        JsonObject Chunk(JsonObject? delta, string? finish, JsonObject? usage = null) => new()
        {
            ["id"] = id,
            ["object"] = "chat.completion.chunk",
            ["created"] = created,
            ["model"] = model,
            ["choices"] = delta is null ? new JsonArray() : new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["finish_reason"] = finish }),
            ["usage"] = usage,
        };

        var chunks = new List<JsonObject> { Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null) };
        if (step.Text is { } text)
        {
            // Several content deltas, as real servers send, to exercise reassembly.
            for (var i = 0; i < text.Length; i += 8)
            {
                chunks.Add(Chunk(new JsonObject { ["content"] = text.Substring(i, Math.Min(8, text.Length - i)) }, null));
            }
        }

        for (var index = 0; index < step.Calls.Count; index++)
        {
            var call = step.Calls[index];
            var half = call.Arguments.Length / 2;
            chunks.Add(Chunk(new JsonObject
            {
                ["tool_calls"] = new JsonArray(new JsonObject
                {
                    ["index"] = index,
                    ["id"] = call.Id,
                    ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = call.Function, ["arguments"] = call.Arguments[..half] },
                }),
            }, null));
            chunks.Add(Chunk(new JsonObject
            {
                ["tool_calls"] = new JsonArray(new JsonObject
                {
                    ["index"] = index,
                    ["function"] = new JsonObject { ["arguments"] = call.Arguments[half..] },
                }),
            }, null));
        }

        chunks.Add(Chunk(new JsonObject(), FinishReason(step)));
        chunks.Add(Chunk(null, null, Usage(step)));
        foreach (var chunk in chunks)
        {
            await context.Response.WriteAsync($"data: {chunk.ToJsonString()}\n\n", Encoding.UTF8);
            await context.Response.Body.FlushAsync();
        }

        await context.Response.WriteAsync("data: [DONE]\n\n", Encoding.UTF8);
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();

    /// <summary>What <see cref="Otherwise"/> answers: a text, or calls (function name, arguments serialised as JSON).</summary>
    public sealed record ScriptedAnswer(string? Text, IReadOnlyList<(string Function, object Arguments)> Calls);

    private sealed record ScriptedCall(string Id, string Function, string Arguments);

    private sealed record Step(string? Text, IReadOnlyList<ScriptedCall> Calls, int? Status, int PromptTokens, int CompletionTokens, Task? Release);
}
