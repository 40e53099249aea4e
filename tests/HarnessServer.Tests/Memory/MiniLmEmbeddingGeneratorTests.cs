using System.Text.Json;
using HarnessServer.Memory;

namespace HarnessServer.Tests.Memory;

/// <summary>The packaged model as the server runs it: tokenization, pooling, normalisation, batching, sharing.</summary>
public sealed class MiniLmEmbeddingGeneratorTests
{
    public static TheoryData<string, long[]> Tokenizations()
    {
        // Computed once with Hugging Face's reference BERT tokenizer over the packaged vocabulary
        // (Fixtures/make-tokenization-fixtures.mjs): white space, tabs and newlines, punctuation, accents, long words.
        var path = Path.Combine(AppContext.BaseDirectory, "Memory", "Fixtures", "tokenization.json");
        var data = new TheoryData<string, long[]>();
        foreach (var fixture in JsonDocument.Parse(File.ReadAllText(path)).RootElement.EnumerateArray())
        {
            data.Add(fixture.GetProperty("text").GetString()!, fixture.GetProperty("ids").EnumerateArray().Select(i => i.GetInt64()).ToArray());
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Tokenizations))]
    public void Tokenizes_as_the_reference_tokenizer(string text, long[] expected)
    {
        Assert.Equal(expected, MiniLmEmbeddingGenerator.Tokenize(text));
    }

    [Fact]
    public void Cuts_long_texts_at_the_models_sequence_length()
    {
        var tokens = MiniLmEmbeddingGenerator.Tokenize(string.Join(' ', Enumerable.Repeat("memory", 1000)));

        Assert.Equal(MiniLmEmbeddingGenerator.MaxTokens, tokens.Length);
        Assert.Equal(101, tokens[0]);
        Assert.Equal(102, tokens[^1]);
    }

    [Fact]
    public async Task Paraphrases_are_near_and_unrelated_texts_are_not()
    {
        using var generator = new MiniLmEmbeddingGenerator();
        var vectors = await EmbedAsync(generator, "How do I reset my password?", "Steps to recover account credentials", "The cafeteria serves lunch at noon.");

        var paraphrase = Cosine(vectors[0], vectors[1]);
        var unrelated = Cosine(vectors[0], vectors[2]);
        Assert.InRange(paraphrase, 0.45, 1.0);
        Assert.InRange(unrelated, -1.0, 0.2);
        Assert.All(vectors, v => Assert.Equal(1.0, Math.Sqrt(v.Sum(x => (double)x * x)), 4));
        Assert.All(vectors, v => Assert.Equal(MiniLmEmbeddingGenerator.Dimensions, v.Length));
    }

    [Fact]
    public async Task A_batch_embeds_each_text_as_it_would_alone_and_in_order()
    {
        using var generator = new MiniLmEmbeddingGenerator();
        // More texts than one batch, of very different lengths, so padding and the length sort are exercised.
        var texts = Enumerable.Range(0, MiniLmEmbeddingGenerator.BatchSize + 5)
            .Select(i => i % 3 == 0 ? $"note {i}" : $"a much longer note number {i} about deploying services with {new string('x', i)} and more words")
            .ToArray();

        var batched = await EmbedAsync(generator, texts);
        var alone = await Task.WhenAll(texts.Select(async t => (await EmbedAsync(generator, t))[0]));

        for (var i = 0; i < texts.Length; i++)
        {
            Assert.InRange(Cosine(batched[i], alone[i]), 0.9999, 1.0001);
        }

        Assert.InRange(Cosine(batched[0], batched[1]), -1.0, 0.99);
    }

    [Fact]
    public async Task Concurrent_single_text_requests_share_model_runs_and_each_gets_its_own_vector()
    {
        using var generator = new MiniLmEmbeddingGenerator();
        var texts = Enumerable.Range(0, 64).Select(i => $"note {i}: the deploy of service {i % 7} failed at step {i % 5}").ToArray();
        var expected = await EmbedAsync(new MiniLmEmbeddingGenerator(), texts);

        // As concurrent memory.save requests do: one text per call, all at once.
        var vectors = await Task.WhenAll(texts.Select(async t => (await EmbedAsync(generator, t))[0]));

        for (var i = 0; i < texts.Length; i++)
        {
            Assert.InRange(Cosine(vectors[i], expected[i]), 0.9999, 1.0001);
        }

        // One run per text would be 64; queued texts share a run.
        Assert.InRange(generator.Runs, 1, texts.Length / 4);
    }

    [Fact]
    public async Task Concurrent_callers_share_one_model_and_get_the_same_vectors()
    {
        var generators = Enumerable.Range(0, 8).Select(_ => new MiniLmEmbeddingGenerator()).ToArray();
        var vectors = await Task.WhenAll(generators.Select(async g => (await EmbedAsync(g, "Rotate the signing keys every ninety days"))[0]));

        Assert.True(MiniLmEmbeddingGenerator.IsLoaded);
        Assert.All(vectors, v => Assert.Equal(vectors[0], v));
    }

    private static async Task<float[][]> EmbedAsync(MiniLmEmbeddingGenerator generator, params string[] texts) =>
        (await generator.GenerateAsync(texts)).Select(e => e.Vector.ToArray()).ToArray();

    internal static double Cosine(float[] a, float[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Length; i++)
        {
            dot += a[i] * b[i];
            na += a[i] * a[i];
            nb += b[i] * b[i];
        }

        return dot / Math.Sqrt(na * nb);
    }
}
