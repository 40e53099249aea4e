using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using HarnessServer.Memory;

namespace HarnessServer.Tests.Memory;

/// <summary>A model change as the server lives through it: old items wait for their batch, and search stays correct meanwhile.</summary>
public sealed class MemoryReembeddingTests(HeldReembeddingMemoryApplication app) : IClassFixture<HeldReembeddingMemoryApplication>
{
    private const string Tenant = "reembed-held-acme";

    [Fact]
    public async Task Items_of_an_old_model_are_found_by_words_never_by_vector_until_re_embedded_in_audited_batches()
    {
        using var admin = app.ClientFor("root", Tenant, roles: ["harness.admin"]);
        const string query = "rotate the signing keys of the payment gateway";
        var current = await admin.SaveAsync("org", "The payment gateway keys are kept in the vault.");
        var old = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            old.Add(await admin.SaveAsync("org", $"Old note {i}: rotate the signing keys of the payment gateway every quarter."));
        }

        // Each old item gets the query's own vector under another model's name: the nearest possible match, were
        // vectors of two models compared.
        var vector = "[" + string.Join(',', HashEmbeddingTestDouble.Embed(query).Select(v => v.ToString("R", CultureInfo.InvariantCulture))) + "]";
        await app.ExecuteAsSuperuserAsync(
            "UPDATE memory_items SET embedding_model = 'old-model', embedding = $1::vector WHERE id = ANY($2)", vector, old.ToArray());

        var progress = await admin.GetFromJsonAsync<JsonElement>("/v1/memory/reembedding");
        Assert.Equal((6, 1), (progress.GetProperty("total").GetInt64(), progress.GetProperty("done").GetInt64()));
        Assert.Equal([current], (await admin.SearchAsync("org", query, k: 10, mode: "vector")).Select(h => h.Id));
        Assert.Equal(old.Order(), (await admin.SearchAsync("org", query, k: 10, mode: "text")).Select(h => h.Id).Order());
        Assert.Equal(old.Append(current).Order(), (await admin.SearchAsync("org", query, k: 10)).Select(h => h.Id).Order());

        await app.Service<MemoryReembedder>().ReembedAllAsync(CancellationToken.None);

        progress = await admin.GetFromJsonAsync<JsonElement>("/v1/memory/reembedding");
        Assert.Equal((6, 6), (progress.GetProperty("total").GetInt64(), progress.GetProperty("done").GetInt64()));
        var vectorHits = await admin.SearchAsync("org", query, k: 10, mode: "vector");
        Assert.Equal(old.Append(current).Order(), vectorHits.Select(h => h.Id).Order());
        Assert.Contains(vectorHits[0].Id, old);
        Assert.Equal(0, await app.CountAsync(
            "SELECT count(*) FROM memory_items WHERE tenant_id = $1 AND embedding = $2::vector", Tenant, vector));

        // Batches of two (Harness:Memory:ReembedBatchSize), each its own event naming its items and the model they had.
        var events = new List<JsonElement>();
        foreach (var payload in await PayloadsAsync())
        {
            events.Add(JsonDocument.Parse(payload).RootElement);
        }

        Assert.Equal([2, 2, 1], events.Select(e => e.GetProperty("count").GetInt32()));
        var items = events.SelectMany(e => e.GetProperty("items").EnumerateArray()).ToList();
        Assert.Equal(old.Order(), items.Select(i => i.GetProperty("id").GetGuid()).Order());
        Assert.All(items, i => Assert.Equal("old-model", i.GetProperty("fromModel").GetString()));
        Assert.All(events, e => Assert.Equal(HashEmbeddingTestDouble.ModelId, e.GetProperty("model").GetString()));
        Assert.True((await admin.GetFromJsonAsync<JsonElement>("/v1/audit/verify")).GetProperty("valid").GetBoolean());

        // A second pass finds nothing to do and writes no event.
        await app.Service<MemoryReembedder>().ReembedAllAsync(CancellationToken.None);
        Assert.Equal(3, (await PayloadsAsync()).Count);
    }

    private async Task<List<string>> PayloadsAsync()
    {
        var payloads = new List<string>();
        for (var seq = 0L; ; seq++)
        {
            var payload = await app.ScalarAsSuperuserAsync<string>(
                "SELECT payload::text FROM audit_events WHERE tenant_id = $1 AND type = 'memory.reembedded' ORDER BY seq OFFSET $2 LIMIT 1", Tenant, seq);
            if (payload is null)
            {
                return payloads;
            }

            payloads.Add(payload);
        }
    }
}
