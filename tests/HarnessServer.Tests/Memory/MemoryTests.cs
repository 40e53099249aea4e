using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Memory;
using HarnessServer.Tests.Http;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace HarnessServer.Tests.Memory;

public sealed class MemoryTests(MemoryApplication app) : IClassFixture<MemoryApplication>
{
    internal static readonly string[] Corpus =
    [
        "Deploy the Kubernetes cluster with Helm charts before the release.",
        "The quarterly budget review meets on Thursday afternoon.",
        "Rotate the database passwords every ninety days.",
        "Our coffee machine on the third floor is broken again.",
        "Write unit tests for the payment service refund logic.",
        "The marketing team launches the spring campaign next week.",
        "Back up PostgreSQL nightly and test the restore procedure.",
        "Renew the TLS certificates for the public load balancer.",
    ];

    [Fact]
    public async Task Search_ranks_the_most_similar_item_first()
    {
        using var alice = app.ClientFor("alice", "rank-acme");
        foreach (var sentence in Corpus)
        {
            await alice.SaveAsync("org", sentence);
        }

        var hits = await alice.SearchAsync("org", "deploy the kubernetes cluster", mode: "vector");

        Assert.Equal(5, hits.Count);
        Assert.Equal(Corpus[0], hits[0].Content);
        Assert.Equal(hits.OrderByDescending(h => h.Score).Select(h => h.Id), hits.Select(h => h.Id));
        Assert.All(hits, h => Assert.Equal("org", h.Namespace));
        Assert.InRange(hits[0].Score, hits[1].Score + 0.1, 1.0);
    }

    [Fact]
    public async Task Another_tenants_item_is_404_and_never_found()
    {
        using var alice = app.ClientFor("alice", "iso-acme");
        using var mallory = app.ClientFor("mallory", "iso-globex", roles: ["harness.admin"]);
        var id = await alice.SaveAsync("org", "acme's launch codes are in the vault");

        var delete = await mallory.DeleteAsync($"/v1/memory/org/items/{id}");
        var hits = await mallory.SearchAsync("org", "acme launch codes vault", k: 50);
        var list = await mallory.GetFromJsonAsync<JsonElement>("/v1/memory/org/items");

        var problem = await ProblemDetailsTests.ProblemAsync(delete, HttpStatusCode.NotFound);
        Assert.Equal("memory_item_not_found", problem.GetProperty("code").GetString());
        Assert.Empty(hits);
        Assert.Empty(list.GetProperty("items").EnumerateArray());
        Assert.Single(await alice.SearchAsync("org", "launch codes"));
    }

    [Fact]
    public async Task Team_namespace_is_written_and_read_by_members_only()
    {
        using var member = app.ClientFor("alice", "team-acme", teams: ["platform"]);
        using var colleague = app.ClientFor("bob", "team-acme", teams: ["platform", "data"]);
        using var outsider = app.ClientFor("carol", "team-acme", teams: ["sales"]);
        await member.SaveAsync("team:platform", "the staging cluster runs in eu-west");

        var write = await outsider.PostAsJsonAsync("/v1/memory/team:platform/items", new { content = "let me in" });
        var read = await outsider.PostAsJsonAsync("/v1/memory/team:platform/search", new { query = "staging cluster" });

        var problem = await ProblemDetailsTests.ProblemAsync(write, HttpStatusCode.Forbidden);
        Assert.Equal("not_a_member", problem.GetProperty("code").GetString());
        Assert.Contains("not a member of team 'platform'", problem.GetProperty("detail").GetString());
        await ProblemDetailsTests.ProblemAsync(read, HttpStatusCode.Forbidden);
        Assert.Equal("the staging cluster runs in eu-west", Assert.Single(await colleague.SearchAsync("team:platform", "staging cluster")).Content);
        Assert.Empty(await member.SearchAsync("org", "staging cluster"));
    }

    [Fact]
    public async Task User_namespace_is_private_to_its_owner()
    {
        using var alice = app.ClientFor("alice", "user-acme", roles: ["harness.admin"]);
        using var bob = app.ClientFor("bob", "user-acme");
        var id = await alice.SaveAsync("user", "my private note about the reorg");

        Assert.Single(await alice.SearchAsync("user", "private note reorg"));
        Assert.Empty(await bob.SearchAsync("user", "private note reorg"));
        await ProblemDetailsTests.ProblemAsync(await bob.DeleteAsync($"/v1/memory/user/items/{id}"), HttpStatusCode.NotFound);
        var problem = await ProblemDetailsTests.ProblemAsync(
            await bob.PostAsJsonAsync("/v1/memory/user:alice/search", new { query = "reorg" }), HttpStatusCode.BadRequest);
        Assert.Equal("invalid_namespace", problem.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Session_namespace_is_visible_to_its_owner_only()
    {
        using var alice = app.ClientFor("alice", "session-acme");
        using var bob = app.ClientFor("bob", "session-acme");
        var created = await (await alice.PostAsync("/v1/sessions", null)).Content.ReadFromJsonAsync<JsonElement>();
        var session = $"session:{created.GetProperty("id").GetGuid()}";
        await alice.SaveAsync(session, "the failing test is flaky on arm64");

        Assert.Single(await alice.SearchAsync(session, "flaky test arm64"));
        // Another user's session does not exist for them.
        var foreign = await bob.PostAsJsonAsync($"/v1/memory/{session}/search", new { query = "flaky test arm64" });
        Assert.Equal("session_not_found", (await ProblemDetailsTests.ProblemAsync(foreign, HttpStatusCode.NotFound)).GetProperty("code").GetString());
        var unknown = await alice.PostAsJsonAsync($"/v1/memory/session:{Guid.NewGuid()}/items", new { content = "x" });
        Assert.Equal("session_not_found", (await ProblemDetailsTests.ProblemAsync(unknown, HttpStatusCode.NotFound)).GetProperty("code").GetString());
    }

    [Fact]
    public async Task Row_level_security_hides_every_row_when_no_tenant_is_set()
    {
        using var alice = app.ClientFor("alice", "rls-acme");
        await alice.SaveAsync("org", "rows exist for this tenant");
        await using var connection = new NpgsqlConnection(app.ConnectionString);
        await connection.OpenAsync();

        var asOwner = await ScalarAsync(connection, "SELECT count(*) FROM memory_items");
        await ScalarAsync(connection, "SET ROLE harness_app");
        var withoutTenant = await ScalarAsync(connection, "SELECT count(*) FROM memory_items");
        await using var transaction = await connection.BeginTransactionAsync();
        await ScalarAsync(connection, "SELECT set_config('harness.tenant_id', 'rls-acme', true)", transaction);
        var withTenant = await ScalarAsync(connection, "SELECT count(*) FROM memory_items", transaction);
        var foreignInsert = await Assert.ThrowsAsync<PostgresException>(() => ScalarAsync(connection, """
            INSERT INTO memory_items (id, tenant_id, namespace, author_id, author_name, content, embedding, embedding_model, created_at)
            SELECT gen_random_uuid(), 'other-tenant', namespace, author_id, author_name, content, embedding, embedding_model, now() FROM memory_items LIMIT 1
            """, transaction));

        Assert.True(asOwner >= 1);
        Assert.Equal(0, withoutTenant);
        Assert.Equal(1, withTenant);
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, foreignInsert.SqlState);
    }

    [Fact]
    public async Task Content_over_the_limit_is_400_with_the_sizes()
    {
        using var alice = app.ClientFor("alice", "limits-acme");

        var response = await alice.PostAsJsonAsync("/v1/memory/org/items", new { content = new string('é', 20000) });

        var problem = await ProblemDetailsTests.ProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.Equal("content_too_large", problem.GetProperty("code").GetString());
        Assert.Contains("40000 bytes of UTF-8; the limit is 32768 bytes", problem.GetProperty("detail").GetString());
    }

    [Theory]
    [InlineData("""{ "content": "x", "metadata": [1, 2] }""", "invalid_metadata")]
    [InlineData("""{ "content": "   " }""", "invalid_content")]
    [InlineData("""{ "content": "x", "expiresAt": "2001-01-01T00:00:00Z" }""", "invalid_expiry")]
    public async Task Malformed_items_are_400_with_a_code(string body, string code)
    {
        using var alice = app.ClientFor("alice", "limits-acme");

        var response = await alice.PostAsync("/v1/memory/org/items", new StringContent(body, Encoding.UTF8, "application/json"));

        Assert.Equal(code, (await ProblemDetailsTests.ProblemAsync(response, HttpStatusCode.BadRequest)).GetProperty("code").GetString());
    }

    [Fact]
    public async Task Metadata_of_9_KiB_is_refused()
    {
        using var alice = app.ClientFor("alice", "limits-acme");

        var response = await alice.PostAsJsonAsync("/v1/memory/org/items", new { content = "x", metadata = new { note = new string('m', 9 * 1024) } });

        Assert.Equal("metadata_too_large", (await ProblemDetailsTests.ProblemAsync(response, HttpStatusCode.BadRequest)).GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("team:", "'team' needs a team name")]
    [InlineData("user:bob", "'user' takes no name")]
    [InlineData("Org", "unknown kind 'Org'")]
    [InlineData("wiki:home", "unknown kind 'wiki'")]
    [InlineData("session:", "'session' needs a session id")]
    [InlineData("org:acme", "'org' takes no name")]
    public async Task Malformed_namespace_is_400_naming_the_fault(string @namespace, string expected)
    {
        using var alice = app.ClientFor("alice", "ns-acme");

        var response = await alice.PostAsJsonAsync($"/v1/memory/{@namespace}/items", new { content = "x" });

        var problem = await ProblemDetailsTests.ProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.Equal("invalid_namespace", problem.GetProperty("code").GetString());
        Assert.Contains(expected, problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Search_k_outside_1_to_50_is_400()
    {
        using var alice = app.ClientFor("alice", "ns-acme");

        var response = await alice.PostAsJsonAsync("/v1/memory/org/search", new { query = "x", k = 51 });

        Assert.Equal("invalid_k", (await ProblemDetailsTests.ProblemAsync(response, HttpStatusCode.BadRequest)).GetProperty("code").GetString());
    }

    [Fact]
    public async Task Expired_items_are_never_returned()
    {
        using var alice = app.ClientFor("alice", "expiry-acme");
        var expired = await alice.SaveAsync("org", "the old wifi password is hunter2");
        var kept = await alice.SaveAsync("org", "the new wifi password is in the vault");
        await app.ExecuteAsSuperuserAsync("UPDATE memory_items SET expires_at = now() - interval '1 second' WHERE id = $1", expired);

        var hits = await alice.SearchAsync("org", "wifi password", k: 10);
        var list = await alice.GetFromJsonAsync<JsonElement>("/v1/memory/org/items");

        Assert.Equal(kept, Assert.Single(hits).Id);
        Assert.Equal(kept, Assert.Single(list.GetProperty("items").EnumerateArray()).GetProperty("id").GetGuid());
    }

    [Fact]
    public async Task Expired_items_are_purged_in_one_audited_batch_and_the_chain_still_verifies()
    {
        using var alice = app.ClientFor("alice", "purge-acme");
        using var auditor = app.ClientFor("carol", "purge-acme", roles: ["harness.auditor"]);
        var expired = await alice.SaveAsync("org", "a note that expires");
        var alsoExpired = await alice.SaveAsync("user", "a private note that expires");
        var kept = await alice.SaveAsync("org", "a note that stays");
        await app.ExecuteAsSuperuserAsync("UPDATE memory_items SET expires_at = now() - interval '1 second' WHERE id = ANY($1)", new[] { expired, alsoExpired });

        Assert.True(await app.Services.GetRequiredService<MemoryPurger>().PurgeAllAsync(default) >= 2);

        Assert.Equal(0, await app.CountAsync($"SELECT count(*) FROM memory_items WHERE id IN ('{expired}', '{alsoExpired}')"));
        Assert.Equal(1, await app.CountAsync($"SELECT count(*) FROM memory_items WHERE id = '{kept}'"));
        var events = await auditor.GetFromJsonAsync<JsonElement>("/v1/audit/events?type=memory.purged");
        var purged = Assert.Single(events.GetProperty("events").EnumerateArray()).GetProperty("payload");
        Assert.Equal(2, purged.GetProperty("count").GetInt32());
        Assert.Equal(new[] { expired, alsoExpired }.Order(), purged.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetGuid()).Order());
        Assert.DoesNotContain("a note that", purged.ToString()); // ids, never content
        Assert.True((await auditor.GetFromJsonAsync<JsonElement>("/v1/audit/verify")).GetProperty("valid").GetBoolean());

        // Nothing left to purge: no second event.
        await app.Services.GetRequiredService<MemoryPurger>().PurgeAllAsync(default);
        Assert.Single((await auditor.GetFromJsonAsync<JsonElement>("/v1/audit/events?type=memory.purged")).GetProperty("events").EnumerateArray());
    }

    [Fact]
    public async Task Listing_pages_by_id_oldest_first()
    {
        using var alice = app.ClientFor("alice", "list-acme");
        var ids = new List<Guid>();
        foreach (var sentence in Corpus.Take(3))
        {
            ids.Add(await alice.SaveAsync("org", sentence));
        }

        var first = await alice.GetFromJsonAsync<JsonElement>("/v1/memory/org/items?limit=2");
        var next = first.GetProperty("next").GetGuid();
        var second = await alice.GetFromJsonAsync<JsonElement>($"/v1/memory/org/items?limit=2&after={next}");

        Assert.Equal(ids.Take(2), first.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetGuid()));
        var last = Assert.Single(second.GetProperty("items").EnumerateArray());
        Assert.Equal(ids[2], last.GetProperty("id").GetGuid());
        Assert.Equal("alice", last.GetProperty("author").GetProperty("id").GetString());
        Assert.Equal(HashEmbeddingTestDouble.ModelId, last.GetProperty("embeddingModel").GetString());
        Assert.False(second.TryGetProperty("next", out _));
    }

    [Fact]
    public async Task Shared_items_are_deleted_by_their_author_or_an_admin_only()
    {
        using var alice = app.ClientFor("alice", "delete-acme");
        using var bob = app.ClientFor("bob", "delete-acme");
        using var admin = app.ClientFor("root", "delete-acme", roles: ["harness.admin"]);
        var first = await alice.SaveAsync("org", "first shared note");
        var second = await alice.SaveAsync("org", "second shared note");

        var refused = await bob.DeleteAsync($"/v1/memory/org/items/{first}");

        Assert.Equal("not_author", (await ProblemDetailsTests.ProblemAsync(refused, HttpStatusCode.Forbidden)).GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.NoContent, (await alice.DeleteAsync($"/v1/memory/org/items/{first}")).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/v1/memory/org/items/{second}")).StatusCode);
        Assert.Empty(await alice.SearchAsync("org", "shared note"));
    }

    [Fact]
    public async Task Writes_and_deletes_are_audit_events_of_their_tenant_naming_the_content_hash()
    {
        using var alice = app.ClientFor("alice", "audit-acme");
        var id = await alice.SaveAsync("user", "audited note");
        await alice.DeleteAsync($"/v1/memory/user/items/{id}");

        await using var connection = new NpgsqlConnection(app.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""
            SELECT type, payload::jsonb->>'namespace', length(payload::jsonb->>'contentSha256'), payload::text LIKE '%audited note%'
            FROM audit_events WHERE tenant_id = 'audit-acme' AND payload::jsonb->>'itemId' = $1 ORDER BY seq
            """, connection) { Parameters = { new() { Value = id.ToString() } } };
        await using var reader = await command.ExecuteReaderAsync();
        var events = new List<(string Type, string Namespace, int HashLength, bool HoldsContent)>();
        while (await reader.ReadAsync())
        {
            events.Add((reader.GetString(0), reader.GetString(1), reader.GetInt32(2), reader.GetBoolean(3)));
        }

        Assert.Equal([("memory.saved", "user", 64, false), ("memory.deleted", "user", 64, false)], events);
    }

    [Fact]
    public async Task Policy_deny_is_403_with_the_rules_reason_and_an_ask_is_held_by_the_pipeline()
    {
        using var member = app.ClientFor("alice", "policy-acme", teams: ["locked", "review"]);
        using var outsider = app.ClientFor("bob", "policy-acme");
        using var noPolicy = app.ClientFor("carol", "bare-acme");

        var denied = await member.PostAsJsonAsync("/v1/memory/team:locked/items", new { content = "x" });
        var asked = await member.PostAsJsonAsync("/v1/memory/team:review/items", new { content = "x" });
        var notMember = await outsider.PostAsJsonAsync("/v1/memory/team:locked/items", new { content = "x" });
        // A tenant whose policy has no rules: the org default denies, the same decision the pipeline gives any tool.
        var unruled = await noPolicy.PostAsJsonAsync("/v1/memory/user/items", new { content = "x" });

        var problem = await ProblemDetailsTests.ProblemAsync(denied, HttpStatusCode.Forbidden);
        Assert.Equal("denied", problem.GetProperty("code").GetString());
        Assert.Equal("team memory is read-only", problem.GetProperty("detail").GetString());
        Assert.Equal(HttpStatusCode.Accepted, asked.StatusCode);
        Assert.Equal("not_a_member", (await ProblemDetailsTests.ProblemAsync(notMember, HttpStatusCode.Forbidden)).GetProperty("code").GetString());
        Assert.Equal("denied", (await ProblemDetailsTests.ProblemAsync(unruled, HttpStatusCode.Forbidden)).GetProperty("code").GetString());
        Assert.Equal(0, await app.CountAsync("SELECT count(*) FROM memory_items WHERE tenant_id IN ('policy-acme', 'bare-acme')"));
        Assert.Equal(1, await app.CountAsync("SELECT count(*) FROM approvals WHERE tenant_id = 'policy-acme'"));
        // The denied and the held write are tool calls of the pipeline, audited as any other; the outsider's never became one.
        Assert.Equal(2, await app.CountAsync("SELECT count(*) FROM audit_events WHERE tenant_id = 'policy-acme' AND type = 'tool_call.requested'"));
    }

    [Fact]
    public async Task Items_of_an_older_model_are_re_embedded_in_the_background()
    {
        using var admin = app.ClientFor("root", "reembed-acme", roles: ["harness.admin"]);
        var id = await admin.SaveAsync("org", "re-embed me please");
        await app.ExecuteAsSuperuserAsync("UPDATE memory_items SET embedding_model = 'old-model', embedding = array_fill(0.5, ARRAY[384])::vector WHERE id = $1", id);

        JsonElement progress;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        do
        {
            await Task.Delay(200);
            progress = await admin.GetFromJsonAsync<JsonElement>("/v1/memory/reembedding");
        }
        while (progress.GetProperty("done").GetInt64() < progress.GetProperty("total").GetInt64() && DateTime.UtcNow < deadline);

        Assert.Equal(HashEmbeddingTestDouble.ModelId, progress.GetProperty("model").GetString());
        Assert.Equal(1, progress.GetProperty("total").GetInt64());
        Assert.Equal(1, progress.GetProperty("done").GetInt64());
        Assert.Equal(id, Assert.Single(await admin.SearchAsync("org", "re-embed me")).Id);
        // The batch is audited: the item, its namespace and the model it had, never its content.
        var payload = await app.ScalarAsSuperuserAsync<string>(
            "SELECT payload::text FROM audit_events WHERE tenant_id = 'reembed-acme' AND type = 'memory.reembedded' ORDER BY seq DESC LIMIT 1");
        var reembedded = JsonDocument.Parse(payload!).RootElement;
        Assert.Equal(HashEmbeddingTestDouble.ModelId, reembedded.GetProperty("model").GetString());
        var item = Assert.Single(reembedded.GetProperty("items").EnumerateArray());
        Assert.Equal(id, item.GetProperty("id").GetGuid());
        Assert.Equal("old-model", item.GetProperty("fromModel").GetString());
        Assert.DoesNotContain("re-embed me", payload);
    }

    [Fact]
    public async Task Reembedding_progress_is_for_admins()
    {
        using var alice = app.ClientFor("alice", "reembed-acme");

        Assert.Equal(HttpStatusCode.Forbidden, (await alice.GetAsync("/v1/memory/reembedding")).StatusCode);
    }

    private static async Task<long> ScalarAsync(NpgsqlConnection connection, string sql, NpgsqlTransaction? transaction = null)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        return await command.ExecuteScalarAsync() is long value ? value : 0;
    }
}

public sealed class MemoryHnswSearchTests(HnswOnlyMemoryApplication app) : IClassFixture<HnswOnlyMemoryApplication>
{
    [Fact]
    public async Task Hnsw_plan_with_iterative_scan_ranks_like_the_exact_plan()
    {
        using var alice = app.ClientFor("alice", "hnsw-acme");
        using var other = app.ClientFor("bob", "hnsw-globex");
        foreach (var sentence in MemoryTests.Corpus)
        {
            await alice.SaveAsync("org", sentence);
            await other.SaveAsync("org", sentence + " (globex)");
        }

        var hits = await alice.SearchAsync("org", "deploy the kubernetes cluster", k: 8);

        Assert.Equal(8, hits.Count);
        Assert.Equal(MemoryTests.Corpus[0], hits[0].Content);
        Assert.DoesNotContain(hits, h => h.Content.Contains("globex"));
    }
}
