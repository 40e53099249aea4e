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

// 50 tenants in a table of MEMORY_BENCH_ROWS (200,000 by default): half the table, 10%, 4%, 2%, then a geometric tail
// from 1% down to 500 rows.
var rowsWanted = int.Parse(Environment.GetEnvironmentVariable("MEMORY_BENCH_ROWS") ?? "200000", CultureInfo.InvariantCulture);
var sizes = new List<int> { rowsWanted / 2, rowsWanted / 10, rowsWanted / 25, rowsWanted / 50 };
for (var i = 0; i < 46; i++)
{
    sizes.Add((int)Math.Round(rowsWanted / 100.0 * Math.Pow(500.0 / (rowsWanted / 100.0), i / 45.0)));
}

var tenants = sizes.Select((size, i) => (Id: $"tenant-{i:D2}", Size: size)).ToList();
// Every tenant writes about the same topics: shared cluster centres, so a small tenant's nearest neighbours in the
// whole table are mostly other tenants' rows (the case that starves a filtered HNSW scan).
var centres = Enumerable.Range(0, GlobalClusters).Select(_ => Normalise(Gaussian(1.0))).ToArray();

await Execute("TRUNCATE memory_items");
await Execute("DROP INDEX IF EXISTS ix_memory_items_embedding");
await Execute("INSERT INTO tenants (id, created_at) SELECT unnest($1::text[]), now() ON CONFLICT DO NOTHING", (object)tenants.Select(t => t.Id).ToArray());

var total = tenants.Sum(t => t.Size);
var copyWatch = Stopwatch.StartNew();
await using (var connection = await database.OpenConnectionAsync())
await using (var writer = await connection.BeginBinaryImportAsync(
    "COPY memory_items (id, tenant_id, namespace, owner_user_id, author_id, author_name, content, metadata, embedding, embedding_model, created_at, expires_at) FROM STDIN (FORMAT BINARY)"))
{
    var now = DateTimeOffset.UtcNow;
    foreach (var (tenant, size) in tenants)
    {
        for (var i = 0; i < size; i++)
        {
            // The largest tenant keeps 5% of its rows in a team namespace: a narrow namespace inside a big tenant.
            var ns = tenant == tenants[0].Id && i % 20 == 0 ? "team:research" : "org";
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
    }

    await writer.CompleteAsync();
}

copyWatch.Stop();
var indexWatch = Stopwatch.StartNew();
await using (var connection = await database.OpenConnectionAsync())
{
    // One build worker: the machine is shared. The graph of 200k 384-d vectors fits in 1 GB.
    foreach (var sql in new[]
    {
        "SET maintenance_work_mem = '1GB'", "SET max_parallel_maintenance_workers = 0",
        "CREATE INDEX ix_memory_items_embedding ON memory_items USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
        "ANALYZE memory_items",
    })
    {
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        await command.ExecuteNonQueryAsync();
    }
}

indexWatch.Stop();
// Saves are audited like the server's: the item and its chained event commit together.
var audit = new HarnessServer.Audit.AuditChain(database, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<HarnessServer.Audit.AuditChain>.Instance);
await audit.StartAsync(default);
var store = new MemoryStore(database, new MemoryEmbedder(new HarnessServer.Tests.Memory.HashEmbeddingTestDouble(), Model, Dimensions), audit,
    new StoredSessionOwnership(new HarnessServer.Data.DatabaseSources(database, database)),
    Options.Create(new MemoryOptions { ExactSearchMaxRows = threshold }), TimeProvider.System);

// Durable single-item saves through the store (local embedding, RLS, HNSW insert, one fsync'd commit each).
var writerUser = new CurrentUser(tenants[^1].Id, "bench-writer", "Bench Writer", [], []);
const int Saves = 300;
var saveWatch = Stopwatch.StartNew();
for (var i = 0; i < Saves; i++)
{
    await store.SaveAsync(writerUser, "user", $"bench save {i} about topic {i % 17}", null, null, null, CancellationToken.None);
}

saveWatch.Stop();

Console.WriteLine($"rows={total} tenants={tenants.Count} copy_s={copyWatch.Elapsed.TotalSeconds:F1} copy_rows_per_s={total / copyWatch.Elapsed.TotalSeconds:F0} " +
                  $"hnsw_build_s={indexWatch.Elapsed.TotalSeconds:F1} saves_per_s={Saves / saveWatch.Elapsed.TotalSeconds:F0} exact_max_rows={threshold}");

var targets = new (string Label, string Tenant, string Namespace, int Rows)[]
{
    ("largest tenant, org", tenants[0].Id, "org", tenants[0].Size - tenants[0].Size / 20),
    ("largest tenant, team:research", tenants[0].Id, "team:research", tenants[0].Size / 20),
    ("10% tenant", tenants[1].Id, "org", tenants[1].Size),
    ("2% tenant", tenants[3].Id, "org", tenants[3].Size),
    ("smallest tenant", tenants[^1].Id, "org", tenants[^1].Size),
};

var plain = $"SELECT id, embedding <=> $6 AS distance FROM memory_items WHERE {MemoryStore.SearchFilter} ORDER BY embedding <=> $6 LIMIT $7";
var strategies = new (string Name, Func<string, MemoryScope, Vector, Task<Guid[]>> Search)[]
{
    ("exact, sequential scan (baseline)", (t, s, v) => Raw(t, s, v, plain, "SET LOCAL enable_indexscan = off", "SET LOCAL enable_bitmapscan = off")),
    ("HNSW + iterative strict_order, ef_search=100", (t, s, v) => Raw(t, s, v, MemoryStore.ApproximateSearchSql, "SET LOCAL hnsw.ef_search = 100", "SET LOCAL hnsw.iterative_scan = strict_order")),
    ($"hybrid: exact below {threshold} rows, else HNSW iterative (shipped)", async (t, s, v) =>
        (await store.SearchVectorAsync(t, s, v, K, CancellationToken.None)).Select(h => h.Id).ToArray()),
};

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
        double recall = 0, returned = 0;
        for (var q = 0; q < Queries; q++)
        {
            var watch = Stopwatch.StartNew();
            var ids = await search(tenant, scope, queries[q]);
            latencies[q] = watch.Elapsed.TotalMilliseconds;
            truth[q] ??= ids;
            recall += ids.Intersect(truth[q]).Count() / (double)truth[q].Length;
            returned += ids.Length;
        }

        Array.Sort(latencies);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {label} | {rows:N0} | {name} | {recall / Queries:F2} | {returned / Queries:F1} | {latencies[Queries / 2]:F2} | {latencies[(int)(Queries * 0.99) - 1]:F2} |"));
    }
}

// Quality and speed with the real model (bench/results/memory-quality.md).
await QualityAndSpeed.RunAsync(database, audit);

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
