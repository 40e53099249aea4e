// Filtered vector search in one shared memory_items table: 50 tenants of very different sizes, every search plan the
// store could use, each against exact (sequential) search in the same run. See bench/results/memory.md.
using System.Diagnostics;
using System.Globalization;
using HarnessServer.Data;
using HarnessServer.Identity;
using HarnessServer.Memory;
using HarnessServer.MemoryBench;
using HarnessServer.Tenancy;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using Pgvector;

const int Dimensions = 384;
const int K = 10;
const int Queries = 100;
// The synthetic embeddings (see Point): 2,000 topics in a 32-dimensional latent space, projected to 384 dimensions.
const int Topics = 2000;
const int LatentDimensions = 32;
const string Model = HarnessServer.Tests.Memory.HashEmbeddingTestDouble.ModelId;

var connectionString = args.FirstOrDefault() ?? Environment.GetEnvironmentVariable("MEMORY_BENCH_CONNECTION")
    ?? throw new InvalidOperationException("Pass a connection string (superuser of a database with pgvector).");
var shipped = new MemoryOptions();
var threshold = int.Parse(Environment.GetEnvironmentVariable("MEMORY_BENCH_EXACT_MAX_ROWS") ?? shipped.ExactSearchMaxRows.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
var builder = new NpgsqlDataSourceBuilder(connectionString);
builder.UseVector();
await using var database = builder.Build();
var random = new Random(42);

// The real schema: the server's migrations, row-level security included.
var contextOptions = new DbContextOptionsBuilder<HarnessDbContext>();
DataExtensions.Configure(contextOptions, database);
await using (var context = new HarnessDbContext(contextOptions.Options, new TenantContext()))
{
    await context.Database.MigrateAsync();
}

await using (var reload = await database.OpenConnectionAsync())
{
    await reload.ReloadTypesAsync();
}

// Each size in MEMORY_BENCH_ROWS (200,000 then 1,000,000 by default), one after the other in the same table: 50 tenants
// (TenantSizes), from half the table down to 500 rows, adding up to exactly the size.
var rowCounts = (Environment.GetEnvironmentVariable("MEMORY_BENCH_ROWS") ?? "200000,1000000")
    .Split(',').Select(r => int.Parse(r, CultureInfo.InvariantCulture)).ToArray();
// Every tenant writes about the same topics: shared topic centres, so a small tenant's nearest neighbours in the
// whole table are mostly other tenants' rows (the case that starves a filtered HNSW scan). Centres have norm ~1.
var centres = Enumerable.Range(0, Topics).Select(_ => Gaussian(LatentDimensions, 1.0 / Math.Sqrt(LatentDimensions))).ToArray();
// A fixed random linear map from the latent space into 384 dimensions (Gaussian entries of variance 1/384: it keeps
// lengths and angles up to a few per cent).
var projection = Enumerable.Range(0, Dimensions).Select(_ => Gaussian(LatentDimensions, 1.0 / Math.Sqrt(Dimensions))).ToArray();
// Saves are audited like the server's: the item and its chained event commit together.
var audit = new HarnessServer.Audit.AuditChain(database, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<HarnessServer.Audit.AuditChain>.Instance);
await audit.StartAsync(default);
var efSearches = new[] { 40, 100, 200, 400 };

foreach (var rowsWanted in rowCounts)
{
    await ScaleAsync(rowsWanted);
    if (rowsWanted == rowCounts[0])
    {
        // Quality and speed with the real model, once, between the sizes (so a 1M run cut short still has them).
        await QualityAndSpeed.RunAsync(database, audit, args.ElementAtOrDefault(1));
    }
}

async Task ScaleAsync(int rowsWanted)
{
    var sizes = TenantSizes(rowsWanted);
    var tenants = sizes.Select((size, i) => (Id: $"tenant-{i:D2}", Size: size)).ToList();
    // Each namespace writes about its own topics, about 50 rows a topic (at least 10 topics, at most all of them),
    // drawn from the topics every tenant shares: a tenant's neighbours in the table are still mostly other tenants'
    // rows of the same topics. The largest tenant's team namespace writes about a subset of that tenant's topics.
    var topics = tenants.Select(t => TopicsOf(t.Size, Enumerable.Range(0, Topics).ToArray())).ToArray();
    var teamTopics = TopicsOf((tenants[0].Size + 19) / 20, topics[0]);
    await Execute("TRUNCATE memory_items");
    await Execute("DROP INDEX IF EXISTS ix_memory_items_embedding");
    await Execute("INSERT INTO tenants (id, created_at) SELECT unnest($1::text[]), now() ON CONFLICT DO NOTHING", (object)tenants.Select(t => t.Id).ToArray());

    var total = tenants.Sum(t => t.Size);
    Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss} scale {total} rows: COPY");
    var copyWatch = Stopwatch.StartNew();
    await using (var connection = await database.OpenConnectionAsync())
    await using (var writer = await connection.BeginBinaryImportAsync(
        "COPY memory_items (id, tenant_id, namespace, owner_user_id, author_id, author_name, content, metadata, embedding, embedding_model, created_at, expires_at) FROM STDIN (FORMAT BINARY)"))
    {
        var now = DateTimeOffset.UtcNow;
        // Tenants' rows interleave, as they do when many tenants write at once: a namespace's rows are spread over the heap.
        var written = new int[tenants.Count];
        var order = Enumerable.Range(0, tenants.Count).SelectMany(t => Enumerable.Repeat(t, tenants[t].Size)).ToArray();
        random.Shuffle(order);
        foreach (var t in order)
        {
            var (tenant, _) = tenants[t];
            var i = written[t]++;
            // The largest tenant keeps 5% of its rows in a team namespace: a narrow namespace inside a big tenant.
            var ns = t == 0 && i % 20 == 0 ? "team:research" : "org";
            await writer.StartRowAsync();
            await writer.WriteAsync(Guid.CreateVersion7(now));
            await writer.WriteAsync(tenant);
            await writer.WriteAsync(ns);
            await writer.WriteNullAsync();
            await writer.WriteAsync("bench");
            await writer.WriteAsync("Bench User");
            await writer.WriteAsync($"{tenant} note {i}: " + new string('x', 160));
            await writer.WriteNullAsync();
            await writer.WriteAsync(new Vector(Point(ns == "org" ? topics[t] : teamTopics)));
            await writer.WriteAsync(Model);
            await writer.WriteAsync(now);
            await writer.WriteNullAsync();
        }

        await writer.CompleteAsync();
    }

    copyWatch.Stop();
    Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss} scale {total} rows: HNSW build");
    var indexWatch = Stopwatch.StartNew();
    await using (var connection = await database.OpenConnectionAsync())
    {
        // The leader and one worker: the machine has 2 cores, shared (the cluster runs under nice). The graph of 1M 384-d
        // vectors fits in 4 GB, so the build never spills.
        foreach (var sql in new[]
        {
            "SET maintenance_work_mem = '4GB'", "SET max_parallel_maintenance_workers = 1",
            $"CREATE INDEX ix_memory_items_embedding ON memory_items USING hnsw (embedding vector_cosine_ops) WITH (m = {MemoryItem.HnswM}, ef_construction = {MemoryItem.HnswEfConstruction})",
        })
        {
            await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
            await command.ExecuteNonQueryAsync();
        }
    }

    indexWatch.Stop();
    await Execute("VACUUM ANALYZE memory_items");
    Console.WriteLine();
    Console.WriteLine($"## Scale: {total:N0} rows");
    Console.WriteLine();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"rows={total} tenants={tenants.Count} copy_s={copyWatch.Elapsed.TotalSeconds:F1} copy_rows_per_s={total / copyWatch.Elapsed.TotalSeconds:F0} hnsw_build_s={indexWatch.Elapsed.TotalSeconds:F1} exact_max_rows={threshold}"));
    Console.WriteLine();

    // The largest tenant's two namespaces, then the tenants nearest to sizes that matter for the plan choice: 10% and 2%
    // of the table, and 10,000, 5,000, 3,000, 1,500 and 500 rows (around the exact threshold).
    var targets = new List<(string Label, string Tenant, string Namespace, int Rows, int[] Topics)>
    {
        ("largest tenant (50%), org", tenants[0].Id, "org", tenants[0].Size - (tenants[0].Size + 19) / 20, topics[0]),
        ("largest tenant, team:research", tenants[0].Id, "team:research", (tenants[0].Size + 19) / 20, teamTopics),
    };
    foreach (var size in new[] { rowsWanted / 10, rowsWanted / 50, 10_000, 5_000, 3_000, 1_500, 500 })
    {
        var nearest = Enumerable.Range(1, tenants.Count - 1).MinBy(t => Math.Abs(tenants[t].Size - size));
        if (targets.All(t => t.Tenant != tenants[nearest].Id))
        {
            targets.Add((tenants[nearest].Id, tenants[nearest].Id, "org", tenants[nearest].Size, topics[nearest]));
        }
    }

    // The store as the server builds it: HNSW forced (an exact threshold of 0) at each hnsw.ef_search, then the shipped
    // options, whose plan depends on the namespace's size.
    var strategies = new List<(string Name, Func<string, MemoryScope, Vector, Task<Guid[]>> Search)>
    {
        // Exact by construction: every row of the namespace, sorted by distance (no index can order it).
        ("exact: every row of the namespace, sorted (ground truth)", (t, s, v) => Raw(t, s, v, MemoryStore.ExactSearchSql)),
    };
    foreach (var ef in efSearches)
    {
        strategies.Add(($"HNSW + iterative scan, hnsw.ef_search={ef}", Search(Store(0, ef))));
    }

    strategies.Add(($"**shipped**: exact below {threshold:N0} rows, else HNSW at ef_search={shipped.EfSearch}", Search(Store(threshold, shipped.EfSearch))));

    Console.WriteLine("| namespace | rows | plan | recall@10 | rows returned of 10 | p50 ms | p99 ms |");
    Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
    foreach (var (label, tenant, ns, rows, queryTopics) in targets)
    {
        var scope = new MemoryScope(MemoryNamespace.Parse(ns), ns, null);
        // Queries are drawn like the namespace's data (one of its topics, then fresh noise): near stored points, never
        // equal to one.
        var queries = Enumerable.Range(0, Queries).Select(_ => new Vector(Point(queryTopics))).ToArray();
        var truth = new Guid[Queries][];
        foreach (var (name, search) in strategies)
        {
            for (var w = 0; w < 5; w++)
            {
                await search(tenant, scope, queries[w]);
            }

            var latencies = new double[Queries];
            double recall = 0, returned = 0, fewest = K;
            for (var q = 0; q < Queries; q++)
            {
                var watch = Stopwatch.StartNew();
                var ids = await search(tenant, scope, queries[q]);
                latencies[q] = watch.Elapsed.TotalMilliseconds;
                truth[q] ??= ids;
                recall += ids.Intersect(truth[q]).Count() / (double)truth[q].Length;
                returned += ids.Length;
                fewest = Math.Min(fewest, ids.Length);
            }

            Array.Sort(latencies);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {label} | {rows:N0} | {name} | {recall / Queries:F3} | {returned / Queries:F1} (fewest {fewest}) | {latencies[Queries / 2]:F2} | {latencies[(int)(Queries * 0.99) - 1]:F2} |"));
        }

        Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss} scale {total} rows: {label} done");
    }
}

MemoryStore Store(int exactMaxRows, int efSearch) => new(database, new MemoryEmbedder(new HarnessServer.Tests.Memory.HashEmbeddingTestDouble(), Model, Dimensions), audit,
    new StoredSessionOwnership(new HarnessServer.Data.DatabaseSources(database, database)),
    Options.Create(new MemoryOptions { ExactSearchMaxRows = exactMaxRows, EfSearch = efSearch }), TimeProvider.System);

static Func<string, MemoryScope, Vector, Task<Guid[]>> Search(MemoryStore store) => async (tenant, scope, vector) =>
    (await store.SearchVectorAsync(tenant, scope, vector, K, CancellationToken.None)).Select(h => h.Id).ToArray();

// Half the table, 10%, 4% and 2% of it, then 46 tenants sharing the remaining 34% on a geometric scale from the
// largest of them down to 500 rows (the largest is found by bisection; rounding goes to it), so the sizes add up to
// exactly the rows wanted.
static List<int> TenantSizes(int rows)
{
    var sizes = new List<int> { rows / 2, rows / 10, rows / 25, rows / 50 };
    var rest = rows - sizes.Sum();
    static int[] Tail(double top) => Enumerable.Range(0, 46).Select(i => (int)Math.Round(top * Math.Pow(500 / top, i / 45.0))).ToArray();
    double low = 500, high = rest;
    for (var step = 0; step < 100; step++)
    {
        var middle = (low + high) / 2;
        (low, high) = Tail(middle).Sum() < rest ? (middle, high) : (low, middle);
    }

    var tail = Tail(low);
    tail[0] += rest - tail.Sum();
    sizes.AddRange(tail);
    return sizes;
}

async Task<Guid[]> Raw(string tenant, MemoryScope scope, Vector vector, string sql, params string[] settings)
{
    await using var transaction = await MemoryTransaction.BeginAsync(database, tenant, CancellationToken.None);
    foreach (var setting in settings)
    {
        await using var set = transaction.Batch(new NpgsqlBatchCommand(setting));
        await set.ExecuteNonQueryAsync();
    }

    await using var search = transaction.Batch(MemoryTransaction.Command(sql,
        MemoryTransaction.Text(tenant), MemoryTransaction.Text(scope.StorageKey), MemoryTransaction.Text(null),
        MemoryTransaction.Value(DateTimeOffset.UtcNow), MemoryTransaction.Text(Model), MemoryTransaction.Value(vector), MemoryTransaction.Value(K)));
    await using var reader = await search.ExecuteReaderAsync();
    var ids = new List<Guid>(K);
    while (await reader.ReadAsync())
    {
        ids.Add(reader.GetGuid(0));
    }

    return ids.ToArray();
}

async Task Execute(string sql, params object[] values)
{
    await using var command = database.CreateCommand(sql);
    command.CommandTimeout = 0;
    foreach (var value in values)
    {
        command.Parameters.Add(new NpgsqlParameter { Value = value });
    }

    await command.ExecuteNonQueryAsync();
}

int[] TopicsOf(int rows, int[] from) => from.OrderBy(_ => random.Next()).Take(Math.Clamp(rows / 50, 10, from.Length)).ToArray();

// A synthetic sentence embedding about one of the topics: the topic's centre in the latent space plus noise of half the centre's norm (a point
// of the topic), mapped into 384 dimensions, plus isotropic noise of a tenth of that norm (real embeddings are not
// exactly in a subspace), normalised. Two points of one topic have a cosine of ~0.8, of two topics ~0 ± 0.18.
float[] Point(int[] topicsOfNamespace)
{
    var latent = Gaussian(LatentDimensions, 0.5 / Math.Sqrt(LatentDimensions));
    var centre = centres[topicsOfNamespace[random.Next(topicsOfNamespace.Length)]];
    for (var d = 0; d < LatentDimensions; d++)
    {
        latent[d] += centre[d];
    }

    var point = Gaussian(Dimensions, 0.1 / Math.Sqrt(Dimensions));
    for (var d = 0; d < Dimensions; d++)
    {
        var row = projection[d];
        for (var l = 0; l < LatentDimensions; l++)
        {
            point[d] += row[l] * latent[l];
        }
    }

    return Normalise(point);
}

float[] Gaussian(int length, double sigma)
{
    var values = new float[length];
    for (var d = 0; d < length; d++)
    {
        // Box-Muller.
        var u = 1.0 - random.NextDouble();
        values[d] = (float)(sigma * Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * random.NextDouble()));
    }

    return values;
}

static float[] Normalise(float[] vector)
{
    var norm = MathF.Sqrt(vector.Sum(v => v * v));
    for (var d = 0; d < vector.Length; d++)
    {
        vector[d] /= norm;
    }

    return vector;
}
