using System.ClientModel;
using HarnessServer.Errors;
using Microsoft.Extensions.AI;

namespace HarnessServer.Memory;

/// <summary>
/// The configured embedding model: turns texts into vectors of the column's dimension and names the model, so that
/// every item records what embedded it.
/// </summary>
internal sealed class MemoryEmbedder(IEmbeddingGenerator<string, Embedding<float>> generator, string modelId, int dimensions)
{
    public string ModelId { get; } = modelId;

    public async Task<float[][]> EmbedAsync(IReadOnlyList<string> texts, CancellationToken cancellationToken)
    {
        GeneratedEmbeddings<Embedding<float>> embeddings;
        try
        {
            embeddings = await generator.GenerateAsync(texts, new EmbeddingGenerationOptions { Dimensions = dimensions }, cancellationToken);
        }
        catch (Exception exception) when (exception is HttpRequestException or ClientResultException)
        {
            throw new HarnessError(ErrorKind.Unavailable, "embeddings_unavailable",
                $"The embedding model '{ModelId}' could not be reached: {exception.Message} Nothing was stored.", "Embeddings unavailable");
        }

        if (embeddings.Count != texts.Count)
        {
            throw new InvalidOperationException($"The embedding model '{ModelId}' returned {embeddings.Count} vectors for {texts.Count} texts.");
        }

        var vectors = new float[texts.Count][];
        for (var i = 0; i < vectors.Length; i++)
        {
            vectors[i] = embeddings[i].Vector.ToArray();
            if (vectors[i].Length != dimensions)
            {
                throw new InvalidOperationException(
                    $"The embedding model '{ModelId}' returned {vectors[i].Length} dimensions; memory stores {dimensions}. " +
                    "Configure a model (or its dimensions) that yields " + dimensions + ".");
            }
        }

        return vectors;
    }

    public async Task<float[]> EmbedAsync(string text, CancellationToken cancellationToken) =>
        (await EmbedAsync([text], cancellationToken))[0];
}
