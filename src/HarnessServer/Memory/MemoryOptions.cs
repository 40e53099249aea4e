namespace HarnessServer.Memory;

/// <summary><c>Harness:Memory</c>: limits and the search plan's thresholds.</summary>
internal sealed class MemoryOptions
{
    public int MaxContentBytes { get; set; } = 32768;
    public int MaxMetadataBytes { get; set; } = 8192;

    /// <summary>
    /// Namespaces with fewer rows than this are searched exactly (btree filter, then sort by distance); larger ones
    /// through HNSW with iterative scan. Chosen from bench/results/memory.md: through HNSW, namespaces of 3,000–8,000
    /// rows of a 200,000-row table reached only 0.93–0.96 recall@10, so they stay exact.
    /// </summary>
    public int ExactSearchMaxRows { get; set; } = 10000;

    /// <summary>
    /// <c>hnsw.ef_search</c> for the HNSW plan: recall@10 of a 20,000-row namespace of a 200,000-row table 0.983 at 40,
    /// 0.988 at 100, 0.990 at 200, 0.998 at 400 (bench/results/memory.md).
    /// </summary>
    public int EfSearch { get; set; } = 200;

    public int ReembedBatchSize { get; set; } = 64;
    public TimeSpan ReembedInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How often items past their expiry are deleted (each batch with a <c>memory.purged</c> audit event).</summary>
    public TimeSpan PurgeInterval { get; set; } = TimeSpan.FromMinutes(10);
}

/// <summary><c>Harness:Embeddings</c>: an OpenAI-compatible endpoint, or none for the built-in local generator.</summary>
internal sealed class EmbeddingOptions
{
    public string? Endpoint { get; set; }
    public string? ApiKey { get; set; }
    public string? Id { get; set; }
    public int Dimensions { get; set; } = MemoryItem.EmbeddingDimensions;
}
