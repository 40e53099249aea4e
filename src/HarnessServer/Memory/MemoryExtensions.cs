using System.ClientModel;
using HarnessServer.Errors;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection.Extensions;
using OpenAI;

namespace HarnessServer.Memory;

internal static class MemoryExtensions
{
    public static WebApplicationBuilder AddHarnessMemory(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<MemoryOptions>()
            .BindConfiguration("Harness:Memory")
            .Validate(o => o.MaxContentBytes > 0 && o.MaxMetadataBytes > 0, "Harness:Memory:MaxContentBytes and :MaxMetadataBytes must be positive.")
            .Validate(o => o.ExactSearchMaxRows >= 0, "Harness:Memory:ExactSearchMaxRows must not be negative.")
            .Validate(o => o.EfSearch is >= MemoryStore.MaxK and <= 1000, $"Harness:Memory:EfSearch must be between {MemoryStore.MaxK} (the largest k) and 1000.")
            .Validate(o => o.ReembedBatchSize is > 0 and <= 2048, "Harness:Memory:ReembedBatchSize must be between 1 and 2048.")
            .Validate(o => o.ReembedInterval > TimeSpan.Zero, "Harness:Memory:ReembedInterval must be positive.")
            .Validate(o => o.PurgeInterval > TimeSpan.Zero, "Harness:Memory:PurgeInterval must be positive.")
            .ValidateOnStart();
        builder.Services.AddOptions<EmbeddingOptions>()
            .BindConfiguration("Harness:Embeddings")
            .Validate(o => o.Dimensions == MemoryItem.EmbeddingDimensions,
                $"Harness:Embeddings:Dimensions must be {MemoryItem.EmbeddingDimensions}, the dimension of memory_items.embedding; another dimension needs a migration.")
            .Validate(o => string.IsNullOrWhiteSpace(o.Endpoint) || Uri.TryCreate(o.Endpoint, UriKind.Absolute, out _),
                "Harness:Embeddings:Endpoint must be an absolute URL.")
            .Validate(o => string.IsNullOrWhiteSpace(o.Endpoint) || !string.IsNullOrWhiteSpace(o.Id),
                "Harness:Embeddings:Id (the model id) is required when Harness:Embeddings:Endpoint is set.")
            .ValidateOnStart();

        builder.Services.AddSingleton(CreateEmbedder);
        builder.Services.TryAddSingleton<IMemoryPolicy, PolicyMemoryPolicy>();
        builder.Services.TryAddSingleton<ISessionOwnership, StoredSessionOwnership>();
        builder.Services.AddSingleton<MemoryStore>();
        builder.Services.AddHostedService<EmbeddingDimensionCheck>();
        builder.Services.AddSingleton<MemoryReembedder>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<MemoryReembedder>());
        builder.Services.AddSingleton<MemoryPurger>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<MemoryPurger>());
        return builder;
    }

    // An OpenAI-compatible endpoint when one is configured (OpenAI, Azure OpenAI's v1 API, Ollama, vLLM), otherwise the
    // packaged local model, so memory understands meaning on a machine without network.
    private static MemoryEmbedder CreateEmbedder(IServiceProvider services)
    {
        var options = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EmbeddingOptions>>().Value;
        if (string.IsNullOrWhiteSpace(options.Endpoint))
        {
            return new MemoryEmbedder(new MiniLmEmbeddingGenerator(), MiniLmEmbeddingGenerator.ModelId, options.Dimensions);
        }

        // Local servers such as Ollama take no key, but the client requires one.
        var key = new ApiKeyCredential(string.IsNullOrWhiteSpace(options.ApiKey) ? "unused" : options.ApiKey);
        var client = new OpenAIClient(key, new OpenAIClientOptions { Endpoint = new Uri(options.Endpoint) });
        var generator = client.GetEmbeddingClient(options.Id).AsIEmbeddingGenerator(options.Dimensions);
        return new MemoryEmbedder(generator, options.Id!, options.Dimensions);
    }
}

/// <summary>
/// Refuses to start when a configured endpoint's vectors do not fit the column. An endpoint that cannot be reached at
/// start only logs: every embedding is checked again when it is made. The packaged model's dimension is fixed, and
/// checking it would load it at every start, also in a process that never embeds.
/// </summary>
internal sealed class EmbeddingDimensionCheck(
    MemoryEmbedder embedder, Microsoft.Extensions.Options.IOptions<EmbeddingOptions> options, ILogger<EmbeddingDimensionCheck> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(options.Value.Endpoint))
        {
            return;
        }

        try
        {
            await embedder.EmbedAsync("dimension check", cancellationToken);
        }
        catch (Errors.HarnessError unavailable)
        {
            logger.LogWarning("Could not check the embedding model's dimension at start: {Detail}", unavailable.Message);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
