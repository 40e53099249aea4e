using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Memory;
using HarnessServer.Tests.Memory;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.MemoryBench;

/// <summary>
/// What users get: the tests' 42 question/answer pairs among 400 distractors, the packaged model against the hash
/// test double, vector against text against hybrid search, through <see cref="MemoryStore"/> (the server's SQL);
/// then embeddings per second, single and batched, and durable saves per second with the model.
/// </summary>
internal static class QualityAndSpeed
{
    public static async Task RunAsync(NpgsqlDataSource database, HarnessServer.Audit.AuditChain audit, string? serverUrl)
    {
        Console.WriteLine();
        Console.WriteLine("## Quality: 42 question/answer pairs among 400 distractors (the tests' corpus), k = 5");
        Console.WriteLine();
        var model = new MemoryEmbedder(new MiniLmEmbeddingGenerator(), MiniLmEmbeddingGenerator.ModelId, MemoryItem.EmbeddingDimensions);
        var hash = new MemoryEmbedder(new HashEmbeddingTestDouble(), HashEmbeddingTestDouble.ModelId, MemoryItem.EmbeddingDimensions);
        var load = Stopwatch.StartNew();
        await model.EmbedAsync("load the model", CancellationToken.None);
        Console.WriteLine($"model_load_s={load.Elapsed.TotalSeconds:F2}");

        Console.WriteLine("| embedder | mode | hit@1 | hit@3 | hit@5 |");
        Console.WriteLine("| --- | --- | --- | --- | --- |");
        string[] corpus = [.. SemanticCorpus.Pairs.Select(p => p.Answer), .. SemanticCorpus.Distractors];
        foreach (var (name, embedder) in new[] { ("all-MiniLM-L6-v2 (default)", model), ("hash test double", hash) })
        {
            var tenant = $"quality-{embedder.ModelId}";
            await using (var insert = database.CreateCommand("INSERT INTO tenants (id, created_at) VALUES ($1, now()) ON CONFLICT DO NOTHING"))
            {
                insert.Parameters.Add(new NpgsqlParameter { Value = tenant });
                await insert.ExecuteNonQueryAsync();
            }

            var store = Store(database, embedder, audit);
            var user = new CurrentUser(tenant, "bench", "Bench", [], []);
            foreach (var note in corpus)
            {
                await store.SaveAsync(user, "org", note, null, null, null, CancellationToken.None);
            }

            foreach (var mode in new[] { MemorySearchMode.Vector, MemorySearchMode.Text, MemorySearchMode.Hybrid })
            {
                int at1 = 0, at3 = 0, at5 = 0;
                foreach (var (query, answer) in SemanticCorpus.Pairs)
                {
                    var hits = (await store.SearchAsync(user, "org", query, 5, mode, CancellationToken.None)).Items.Select(h => h.Content).ToList();
                    var rank = hits.IndexOf(answer);
                    at1 += rank == 0 ? 1 : 0;
                    at3 += rank is >= 0 and < 3 ? 1 : 0;
                    at5 += rank >= 0 ? 1 : 0;
                }

                double n = SemanticCorpus.Pairs.Length;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {name} | {MemorySearchModes.Name(mode)} | {at1 / n:F3} | {at3 / n:F3} | {at5 / n:F3} |"));
            }
        }

        // Speed: the same 256 short notes, one per call, then 32 per call.
        var texts = Enumerable.Range(0, 256).Select(i => SemanticCorpus.Distractors[i % SemanticCorpus.Distractors.Length] + $" ({i})").ToArray();
        var single = Stopwatch.StartNew();
        foreach (var text in texts)
        {
            await model.EmbedAsync(text, CancellationToken.None);
        }

        single.Stop();
        var batched = Stopwatch.StartNew();
        foreach (var chunk in texts.Chunk(32))
        {
            await model.EmbedAsync(chunk, CancellationToken.None);
        }

        batched.Stop();
        var hashed = Stopwatch.StartNew();
        foreach (var text in texts)
        {
            await hash.EmbedAsync(text, CancellationToken.None);
        }

        hashed.Stop();
        Console.WriteLine();
        Console.WriteLine("## Speed");
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"embeddings_per_s model_single={texts.Length / single.Elapsed.TotalSeconds:F0} model_batch32={texts.Length / batched.Elapsed.TotalSeconds:F0} hash_single={texts.Length / hashed.Elapsed.TotalSeconds:F0}"));

        // memory.save end to end through the store with each embedder: embed, RLS, HNSW insert, audited durable commit.
        foreach (var (name, embedder) in new[] { ("model", model), ("hash", hash) })
        {
            var store = Store(database, embedder, audit);
            var user = new CurrentUser($"quality-{embedder.ModelId}", "bench-writer", "Bench Writer", [], []);
            const int Saves = 200;
            var sequential = Stopwatch.StartNew();
            for (var i = 0; i < Saves; i++)
            {
                await store.SaveAsync(user, "user", $"sequential save {i} about topic {i % 17}", null, null, null, CancellationToken.None);
            }

            sequential.Stop();
            var concurrent = Stopwatch.StartNew();
            await Parallel.ForEachAsync(Enumerable.Range(0, Saves), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, ct) =>
                await store.SaveAsync(user, "user", $"concurrent save {i} about topic {i % 17}", null, null, null, ct));
            concurrent.Stop();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"saves_per_s embedder={name} sequential={Saves / sequential.Elapsed.TotalSeconds:F0} concurrent8={Saves / concurrent.Elapsed.TotalSeconds:F0}"));
        }

        if (serverUrl is not null)
        {
            await HttpSavesAsync(serverUrl);
        }
    }

    /// <summary>
    /// <c>POST /v1/memory/user/items</c> against the real server (Development, its own database on the bench cluster,
    /// the packaged model, no configuration): token, policy decision, embedding, audited durable commit, 201.
    /// </summary>
    private static async Task HttpSavesAsync(string serverUrl)
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 64 }) { BaseAddress = new Uri(serverUrl) };
        var token = (await (await http.PostAsJsonAsync("/dev/token", new { user = "memorybench", tenant = "memorybench", roles = new[] { "harness.admin" } }))
            .Content.ReadFromJsonAsync<JsonElement>()).GetProperty("accessToken").GetString()!;
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        (await http.PutAsync("/v1/admin/policies/org", new StringContent("""
            default: deny
            rules:
              - tool: "memory.*"
                effect: allow
            """, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();

        async Task SaveAsync(string content)
        {
            using var response = await http.PostAsJsonAsync("/v1/memory/user/items", new { content });
            if (response.StatusCode != HttpStatusCode.Created)
            {
                throw new InvalidOperationException($"memory.save over HTTP answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
            }
        }

        // Warm-up: the model load, JIT, pools.
        for (var i = 0; i < 10; i++)
        {
            await SaveAsync($"warm-up note {i}");
        }

        foreach (var clients in new[] { 1, 8, 32 })
        {
            var saves = clients == 1 ? 200 : 400;
            var latencies = new System.Collections.Concurrent.ConcurrentBag<double>();
            var watch = Stopwatch.StartNew();
            await Parallel.ForEachAsync(Enumerable.Range(0, saves), new ParallelOptions { MaxDegreeOfParallelism = clients }, async (i, _) =>
            {
                var one = Stopwatch.StartNew();
                await SaveAsync($"HTTP save {i} by {clients} clients about topic {i % 17}: the deploy of service {i % 7} needs step {i % 5}.");
                latencies.Add(one.Elapsed.TotalMilliseconds);
            });
            watch.Stop();
            var sorted = latencies.Order().ToArray();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"http_memory_save clients={clients} saves={saves} per_s={saves / watch.Elapsed.TotalSeconds:F0} p50_ms={sorted[sorted.Length / 2]:F1} p99_ms={sorted[(int)(sorted.Length * 0.99) - 1]:F1}"));
        }
    }

    private static MemoryStore Store(NpgsqlDataSource database, MemoryEmbedder embedder, HarnessServer.Audit.AuditChain audit) =>
        new(database, embedder, audit, new StoredSessionOwnership(new HarnessServer.Data.DatabaseSources(database, database)),
            Options.Create(new MemoryOptions()), TimeProvider.System);
}
