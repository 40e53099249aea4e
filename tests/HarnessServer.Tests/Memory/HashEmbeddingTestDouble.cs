using System.Text;
using Microsoft.Extensions.AI;

namespace HarnessServer.Tests.Memory;

/// <summary>
/// A test double for the embedding model, for tests that do not need meaning and should not pay for the model:
/// feature hashing of lower-cased word unigrams, word bigrams
/// and character trigrams into signed buckets, L2-normalised. Texts score high when they share words and word parts
/// (lexical similarity), not meaning: "car" and "automobile" are unrelated to it, and bucket collisions add noise that
/// grows with text length. Deterministic across processes and versions, named by <see cref="ModelId"/>.
/// </summary>
internal sealed class HashEmbeddingTestDouble : IEmbeddingGenerator<string, Embedding<float>>
{
    public const string ModelId = "test-hash-384-v1";
    private const int Dimensions = 384;

    // Words that carry no topic; left in, they dominate short texts.
    private static readonly HashSet<string> StopWords = new(StringComparer.Ordinal)
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of", "on", "or", "that",
        "the", "this", "to", "was", "we", "with",
    };

    private readonly EmbeddingGeneratorMetadata _metadata = new("local-hash", null, ModelId, Dimensions);

    public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(
        IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var embeddings = new GeneratedEmbeddings<Embedding<float>>();
        foreach (var value in values)
        {
            embeddings.Add(new Embedding<float>(Embed(value)) { ModelId = ModelId });
        }

        return Task.FromResult(embeddings);
    }

    public static float[] Embed(string text)
    {
        var vector = new float[Dimensions];
        var words = Words(text);
        for (var i = 0; i < words.Count; i++)
        {
            Add(vector, "w:" + words[i], 1.0f);
            if (i + 1 < words.Count)
            {
                Add(vector, "b:" + words[i] + " " + words[i + 1], 0.7f);
            }

            var padded = "<" + words[i] + ">";
            for (var j = 0; j + 3 <= padded.Length; j++)
            {
                Add(vector, "t:" + padded.Substring(j, 3), 0.25f);
            }
        }

        var norm = MathF.Sqrt(vector.Sum(v => v * v));
        if (norm > 0)
        {
            for (var i = 0; i < vector.Length; i++)
            {
                vector[i] /= norm;
            }
        }
        else
        {
            // Text without words still needs a valid unit vector: cosine distance to a zero vector is undefined.
            vector[0] = 1;
        }

        return vector;
    }

    private static List<string> Words(string text)
    {
        var words = new List<string>();
        var current = new StringBuilder();
        foreach (var c in text.ToLowerInvariant().Normalize(NormalizationForm.FormKC))
        {
            if (char.IsLetterOrDigit(c))
            {
                current.Append(c);
            }
            else if (current.Length > 0)
            {
                Flush();
            }
        }

        Flush();
        return words;

        void Flush()
        {
            if (current.Length > 0 && !StopWords.Contains(current.ToString()))
            {
                words.Add(current.ToString());
            }

            current.Clear();
        }
    }

    // Signed hashing: the sign bit makes colliding features cancel on average instead of piling up.
    private static void Add(float[] vector, string feature, float weight)
    {
        var hash = Fnv1a64(feature);
        var index = (int)(hash % Dimensions);
        vector[index] += (hash >> 63) == 0 ? weight : -weight;
    }

    // FNV-1a over UTF-16 code units, then a final mix so that low and high bits both depend on every character.
    private static ulong Fnv1a64(string value)
    {
        var hash = 14695981039346656037UL;
        foreach (var c in value)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }

        hash ^= hash >> 33;
        hash *= 0xff51afd7ed558ccdUL;
        hash ^= hash >> 33;
        return hash;
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(EmbeddingGeneratorMetadata) ? _metadata
        : serviceType.IsInstanceOfType(this) ? this
        : null;

    public void Dispose()
    {
    }
}
