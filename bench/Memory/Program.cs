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
const int GlobalClusters = 200;
const string Model = HarnessServer.Tests.Memory.HashEmbeddingTestDouble.ModelId;

var connectionString = args.FirstOrDefault() ?? Environment.GetEnvironmentVariable("MEMORY_BENCH_CONNECTION")
    ?? throw new InvalidOperationException("Pass a connection string (superuser of a database with pgvector).");
var threshold = int.Parse(Environment.GetEnvironmentVariable("MEMORY_BENCH_EXACT_MAX_ROWS") ?? "10000", CultureInfo.InvariantCulture);
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

// Each size in MEMORY_BENCH_ROWS (200,000 then 1,000,000 by default), one after the other in the same table: 50 tenants,
// half the table, 10%, 4%, 2%, then a geometric tail from 1% down to 500 rows.
var rowCounts = (Environment.GetEnvironmentVariable("MEMORY_BENCH_ROWS") ?? "200000,1000000")
    .Split(',').Select(r => int.Parse(r, CultureInfo.InvariantCulture)).ToArray();
// Every tenant writes about the same topics: shared cluster centres, so a small tenant's nearest neighbours in the
// whole table are mostly other tenants' rows (the case that starves a filtered HNSW scan).
var centres = Enumerable.Range(0, GlobalClusters).Select(_ => Normalise(Gaussian(1.0))).ToArray();
// Saves are audited like the server's: the item and its chained event commit together.
var audit = new HarnessServer.Audit.AuditChain(database, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<HarnessServer.Audit.AuditChain>.Instance);
await audit.StartAsync(default);
var efSearches = new[] { 100, new MemoryOptions().EfSearch, 400 }.Distinct().Order().ToArray();
var shippedEf = new MemoryOptions().EfSearch;

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
    var sizes = new List<int> { rowsWanted / 2, rowsWanted / 10, rowsWanted / 25, rowsWanted / 50 };
    for (var i = 0; i < 46; i++)
    {
        sizes.Add((int)Math.Round(rowsWanted / 100.0 * Math.Pow(500.0 / (rowsWanted / 100.0), i / 45.0)));
    }

    var tenants = sizes.Select((size, i) => (Id: $"tenant-{i:D2}", Size: size)).ToList();
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
            await writer.WriteAsync(new Vector(Point(random.Next(GlobalClusters))));
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
        // One build worker: the machine is shared (the cluster runs under nice). The graph of 1M 384-d vectors fits in 4 GB.
        foreach (var sql in new[]
        {
            "SET maintenance_work_mem = '4GB'", "SET max_parallel_maintenance_workers = 0",
            "CREATE INDEX ix_memory_items_embedding ON memory_items USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
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

    var belowThreshold = tenants.Where(t => t.Size < threshold).MaxBy(t => t.Size);
    var targets = new (string Label, string Tenant, string Namespace, int Rows)[]
    {
        ("largest tenant (50%), org", tenants[0].Id, "org", tenants[0].Size - (tenants[0].Size + 19) / 20),
        ("largest tenant, team:research", tenants[0].Id, "team:research", (tenants[0].Size + 19) / 20),
        ("10% tenant", tenants[1].Id, "org", tenants[1].Size),
        ("2% tenant", tenants[3].Id, "org", tenants[3].Size),
        ("largest tenant below the exact threshold", belowThreshold.Id, "org", belowThreshold.Size),
        ("smallest tenant", tenants[^1].Id, "org", tenants[^1].Size),
    };

    // The store as the server builds it, with the shipped options but for hnsw.ef_search.
    var stores = efSearches.Select(ef => (Ef: ef, Store: new MemoryStore(database, new MemoryEmbedder(new HarnessServer.Tests.Memory.HashEmbeddingTestDouble(), Model, Dimensions), audit,
        new StoredSessionOwnership(new HarnessServer.Data.DatabaseSources(database, database)),
        Options.Create(new MemoryOptions { ExactSearchMaxRows = threshold, EfSearch = ef }), TimeProvider.System))).ToArray();
    var strategies = new List<(string Name, Func<string, MemoryScope, Vector, Task<Guid[]>> Search)>
    {
        // Exact by construction: every row of the namespace, sorted by distance (no index can order it).
        ("exact: every row of the namespace, sorted (ground truth)", (t, s, v) => Raw(t, s, v, MemoryStore.ExactSearchSql)),
    };
    foreach (var (ef, store) in stores)
    {
        strategies.Add(($"production query, hnsw.ef_search={ef}{(ef == shippedEf ? " (shipped)" : "")}", async (t, s, v) =>
            (await store.SearchVectorAsync(t, s, v, K, CancellationToken.None)).Select(h => h.Id).ToArray()));
    }

    Console.WriteLine("| namespace | rows | plan | recall@10 | rows returned of 10 | p50 ms | p99 ms |");
    Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
    foreach (var (label, tenant, ns, rows) in targets)
    {
        var scope = new MemoryScope(MemoryNamespace.Parse(ns), ns, null);
        var queries = Enumerable.Range(0, Queries).Select(_ => new Vector(Point(random.Next(GlobalClusters)))).ToArray();
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

float[] Point(int cluster)
{
    var noise = Gaussian(0.06);
    var centre = centres[cluster];
    for (var d = 0; d < Dimensions; d++)
    {
        noise[d] += centre[d];
    }

    return Normalise(noise);
}

float[] Gaussian(double sigma)
{
    var values = new float[Dimensions];
    for (var d = 0; d < Dimensions; d++)
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
