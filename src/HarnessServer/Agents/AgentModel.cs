using System.ClientModel;
using System.ClientModel.Primitives;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text.Json;
using HarnessServer.Observability;
using HarnessServer.Tools;
using Microsoft.Extensions.Options;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.Connectors.OpenAI;
using OpenAI;
using OpenAI.Chat;

namespace HarnessServer.Agents;

/// <summary>A function call the model proposed, with its arguments exactly as the model sent them.</summary>
internal sealed record ProposedCall(string Id, string Function, string Arguments);

/// <summary>What one model call answered, and the tokens it used.</summary>
internal sealed record ModelResponse(string? Text, IReadOnlyList<ProposedCall> Calls, int InputTokens, int OutputTokens, string Model);

/// <summary>
/// The configured model behind Semantic Kernel's OpenAI connector, pointed at any OpenAI-compatible endpoint through
/// an <see cref="HttpClient"/> from <see cref="IHttpClientFactory"/> that carries the standard resilience handler
/// (retries of 429, 5xx and timeouts with backoff). The model's calls come back to <see cref="AgentTurns"/>
/// (<c>autoInvoke: false</c>), which stores each step and invokes each call on the turn's kernel, where
/// <see cref="PipelineFunctionFilter"/> hands it to the tool-call pipeline. SK's automatic invocation would go through
/// the same filter, but it loops inside the connector, where a step cannot be stored before and after a call, a turn
/// cannot stop for approval or pause between calls, and calls to unknown functions are answered by SK unaudited.
/// </summary>
internal sealed class AgentModel
{
    public const string HttpClientName = "harness-model";

    private static readonly Histogram<int> TokenUsage = HarnessTelemetry.Meter.CreateHistogram<int>(
        "gen_ai.client.token.usage", "{token}", "Tokens used by model calls of agent turns.");
    private static readonly Histogram<double> Duration = HarnessTelemetry.Meter.CreateHistogram<double>(
        "gen_ai.client.operation.duration", "s", "Duration of model calls of agent turns.");

    private readonly ModelOptions _options;
    private readonly IChatCompletionService? _chat;

    public AgentModel(IOptions<ModelOptions> options, IHttpClientFactory clients, ILoggerFactory loggers)
    {
        _options = options.Value;
        if (_options.IsConfigured)
        {
            var client = new OpenAIClient(
                // Ollama and vLLM take no key, but the OpenAI client refuses an empty credential; they ignore this one.
                new ApiKeyCredential(string.IsNullOrEmpty(_options.ApiKey) ? "no-key" : _options.ApiKey),
                new OpenAIClientOptions
                {
                    Endpoint = new Uri(_options.Endpoint!),
                    Transport = new HttpClientPipelineTransport(clients.CreateClient(HttpClientName)),
                    // The HttpClient's resilience handler retries; a second retry layer would multiply the attempts.
                    RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
                    NetworkTimeout = Timeout.InfiniteTimeSpan,
                });
            _chat = new OpenAIChatCompletionService(_options.Id, client, loggers);
        }
    }

    public bool IsConfigured => _chat is not null;

    public string ModelId => _options.Id;

    /// <summary>
    /// One chat call for <paramref name="tenant"/> offering <paramref name="functions"/> (none for summaries); never
    /// invokes them. Token usage is measured per tenant (a bounded set; users are counted in the database, not here).
    /// </summary>
    public async Task<ModelResponse> CompleteAsync(
        ChatHistory history, IReadOnlyList<KernelFunction> functions, string purpose, string tenant, CancellationToken cancellationToken)
    {
        var chat = _chat ?? throw new InvalidOperationException("The model is not configured.");
        var settings = new OpenAIPromptExecutionSettings
        {
            ModelId = _options.Id,
            FunctionChoiceBehavior = functions.Count > 0 ? FunctionChoiceBehavior.Auto(functions, autoInvoke: false) : null,
        };

        using var activity = HarnessTelemetry.ActivitySource.StartActivity($"chat {_options.Id}", ActivityKind.Client);
        activity?.SetTag("gen_ai.operation.name", "chat");
        activity?.SetTag("gen_ai.provider.name", "openai");
        activity?.SetTag("gen_ai.request.model", _options.Id);
        activity?.SetTag("harness.purpose", purpose);
        activity?.SetTag("harness.tenant", tenant);
        var started = Stopwatch.GetTimestamp();
        string? error = null;
        try
        {
            var message = await chat.GetChatMessageContentAsync(history, settings, new Kernel(), cancellationToken);
            var response = Read(message);
            activity?.SetTag("gen_ai.response.model", response.Model);
            activity?.SetTag("gen_ai.usage.input_tokens", response.InputTokens);
            activity?.SetTag("gen_ai.usage.output_tokens", response.OutputTokens);
            TagList input = Tags(response.Model, "input");
            input.Add("harness.tenant", tenant);
            TagList output = Tags(response.Model, "output");
            output.Add("harness.tenant", tenant);
            TokenUsage.Record(response.InputTokens, input);
            TokenUsage.Record(response.OutputTokens, output);
            return response;
        }
        catch (Exception e) when (e is HttpOperationException or HttpRequestException or TaskCanceledException)
        {
            error = e.GetType().Name;
            activity?.SetStatus(ActivityStatusCode.Error, e.Message);
            throw;
        }
        finally
        {
            var tags = Tags(null, null);
            if (error is not null)
            {
                tags.Add("error.type", error);
            }

            Duration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, tags);
        }
    }

    private TagList Tags(string? responseModel, string? tokenType)
    {
        var tags = new TagList
        {
            { "gen_ai.operation.name", "chat" },
            { "gen_ai.provider.name", "openai" },
            { "gen_ai.request.model", _options.Id },
        };
        if (responseModel is not null)
        {
            tags.Add("gen_ai.response.model", responseModel);
        }

        if (tokenType is not null)
        {
            tags.Add("gen_ai.token.type", tokenType);
        }

        return tags;
    }

    // The raw completion keeps each call's arguments as the model sent them; SK's FunctionCallContent turns every
    // argument value into a string, which would make integers fail the tool's schema.
    private ModelResponse Read(Microsoft.SemanticKernel.ChatMessageContent message)
    {
        if (message.InnerContent is ChatCompletion completion)
        {
            var calls = completion.ToolCalls
                .Where(c => c.Kind == ChatToolCallKind.Function)
                .Select(c => new ProposedCall(c.Id, c.FunctionName, c.FunctionArguments.ToString()))
                .ToList();
            var text = string.Concat(completion.Content.Where(p => p.Kind == ChatMessageContentPartKind.Text).Select(p => p.Text));
            return new ModelResponse(text.Length == 0 ? null : text, calls,
                completion.Usage?.InputTokenCount ?? 0, completion.Usage?.OutputTokenCount ?? 0, completion.Model ?? _options.Id);
        }

        var fallback = FunctionCallContent.GetFunctionCalls(message)
            .Select(c => new ProposedCall(c.Id ?? Guid.NewGuid().ToString("N"), c.FunctionName, JsonSerializer.Serialize(c.Arguments)))
            .ToList();
        return new ModelResponse(message.Content, fallback, 0, 0, message.ModelId ?? _options.Id);
    }
}

/// <summary>
/// Registry tools as Semantic Kernel functions: name, description and each schema property as a parameter, and the
/// registry name in the function's metadata, which is how <see cref="PipelineFunctionFilter"/> knows the function is a
/// harness tool and which one. The functions' bodies never run: the filter answers every invocation.
/// </summary>
internal static class ToolFunctions
{
    private const string ToolKey = "harness.tool";

    /// <summary>The registry tool a function stands for; null for any function that is not a harness tool.</summary>
    public static string? ToolOf(KernelFunction function) =>
        function.Metadata.AdditionalProperties.TryGetValue(ToolKey, out var tool) ? tool as string : null;

    /// <summary>A tool as offered to the model.</summary>
    public static KernelFunction For(ToolDefinition tool, FunctionNames names)
    {
        var required = tool.Schema.TryGetProperty("required", out var r) && r.ValueKind == JsonValueKind.Array
            ? r.EnumerateArray().Select(e => e.GetString()).ToHashSet(StringComparer.Ordinal)
            : [];
        var parameters = new List<KernelParameterMetadata>();
        if (tool.Schema.TryGetProperty("properties", out var properties) && properties.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in properties.EnumerateObject())
            {
                parameters.Add(new KernelParameterMetadata(property.Name)
                {
                    Description = property.Value.TryGetProperty("description", out var d) ? d.GetString() : null,
                    Schema = KernelJsonSchema.Parse(property.Value.GetRawText()),
                    IsRequired = required.Contains(property.Name),
                });
            }
        }

        return Create(tool.Name, names.ToFunction(tool.Name), tool.Description, parameters);
    }

    /// <summary>
    /// The function for one call the model proposed, named as the model named it. The tool need not be offered (any
    /// more): an unknown or withdrawn tool still goes to the pipeline, which rejects it and audits the attempt.
    /// </summary>
    public static KernelFunction ForCall(string tool, string function) => Create(tool, FunctionNames.Sanitize(function), null, []);

    private static KernelFunction Create(string tool, string function, string? description, IReadOnlyList<KernelParameterMetadata> parameters) =>
        KernelFunctionFactory.CreateFromMethod(
            (Func<string>)(static () => throw new InvalidOperationException(
                "Harness tools run only through the tool-call pipeline; this kernel has no PipelineFunctionFilter.")),
            new KernelFunctionFromMethodOptions
            {
                FunctionName = function,
                Description = description,
                Parameters = parameters,
                AdditionalMetadata = new Dictionary<string, object?> { [ToolKey] = tool }.AsReadOnly(),
            });
}
