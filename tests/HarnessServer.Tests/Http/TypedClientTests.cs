using HarnessServer.Client;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Http;

/// <summary>
/// The typed client over the route groups the CLI tests do not reach (memory, session detail, policy history): it is
/// generated from the checked-in document, so a body or status the server changed on its own breaks these.
/// </summary>
public sealed class TypedClientTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    [Fact]
    public async Task Memory_saves_lists_and_searches_through_the_generated_client()
    {
        const string tenant = "client-memory";
        using var admin = app.ClientFor("root", tenant, roles: ["harness.admin"]);
        await new HarnessClient(admin).PutPolicyFileAsync(PolicyLevel.Org, """
            default: deny
            rules:
              - tool: "memory.save"
                effect: allow
                args: { namespace: ["user"] }
              - tool: "memory.search"
                effect: allow
            """, null, default);
        using var http = app.ClientFor("alice", tenant);
        var client = new HarnessClient(http);

        var saved = await client.SaveMemoryAsync("user", new SaveMemoryRequest { Content = "the build runs on two cores" }, default);
        Assert.Equal("user", saved.Namespace);

        var page = await client.ListMemoryAsync("user", null, 10, default);
        Assert.Contains(page.Items, i => i.Id == saved.Id && i.Content == "the build runs on two cores");

        var found = await client.SearchMemoryAsync("user", new SearchMemoryRequest { Query = "how many cores does the build run on", K = 3 }, default);
        Assert.Equal(saved.Id, found.Items.First().Id);

        // A namespace the policy does not open is a problem the client throws, with its status.
        var refused = await Assert.ThrowsAnyAsync<HarnessApiException>(() =>
            client.SaveMemoryAsync("org", new SaveMemoryRequest { Content = "x" }, default));
        Assert.Equal(403, refused.StatusCode);
    }

    [Fact]
    public async Task Sessions_and_policy_history_read_through_the_generated_client()
    {
        const string tenant = "client-sessions";
        using var admin = app.ClientFor("root", tenant, roles: ["harness.admin"]);
        var adminClient = new HarnessClient(admin);
        await adminClient.PutPolicyFileAsync(PolicyLevel.Org, "default: deny\nrules:\n  - tool: \"fs.list\"\n    effect: allow\n", null, default);
        var stored = await adminClient.GetPolicyFileAsync(PolicyLevel.Org, default);
        await adminClient.PutPolicyFileAsync(PolicyLevel.Org, stored!.Content + "# second\n", stored.Version, default);
        var history = await adminClient.GetPolicyHistoryAsync("org", default);
        Assert.Equal([1, 2], history.Versions.Select(v => v.Version));
        Assert.Contains("+ # second", history.Versions.Last().Diff);

        using var http = app.ClientFor("alice", tenant);
        var client = new HarnessClient(http);
        var session = await client.CreateSessionAsync(default);
        var call = await client.CallToolAsync(session.Id, new ToolCallBody { Tool = "fs.list", Arguments = System.Text.Json.JsonDocument.Parse("""{"path":"."}""").RootElement }, default);
        Assert.Equal(ToolCallStatus.Succeeded, call.Status);
        Assert.Equal("allow", call.Decision!.Effect);

        var detail = await client.GetSessionAsync(session.Id, default);
        Assert.Equal("alice", detail.Owner);
        Assert.Equal(call.Id, Assert.Single(detail.ToolCalls).Id);

        // Another user's session is a 404 the client throws.
        using var bob = app.ClientFor("bob", tenant);
        var hidden = await Assert.ThrowsAnyAsync<HarnessApiException>(() => new HarnessClient(bob).GetSessionAsync(session.Id, default));
        Assert.Equal(404, hidden.StatusCode);
    }
}
