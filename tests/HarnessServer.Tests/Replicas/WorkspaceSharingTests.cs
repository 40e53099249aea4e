using System.Net;
using System.Text.Json;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Replicas;

/// <summary>
/// <c>/readyz</c> of each replica tells whether its <c>Harness:WorkspacesPath</c> is the one the other live replicas
/// use: this host and real server processes over one database, first on one folder, then with a replica on another.
/// </summary>
public sealed class WorkspaceSharingTests(WorkspaceSharingTests.ImmediateCheck app) : IClassFixture<WorkspaceSharingTests.ImmediateCheck>
{
    /// <summary>No grace: a replica's marker must be visible as soon as it is registered (local folders cache nothing).</summary>
    public sealed class ImmediateCheck : HarnessApplication
    {
        protected override void Configure(IDictionary<string, string?> settings) =>
            settings["Harness:WorkspaceSharing:Grace"] = "00:00:00";
    }

    private static readonly Dictionary<string, string> NoGrace = new() { ["Harness__WorkspaceSharing__Grace"] = "00:00:00" };

    [Fact]
    public async Task Readiness_says_workspaces_not_shared_only_when_a_live_replica_writes_to_another_folder()
    {
        using var a = app.CreateClient();
        await using var b = await ServerProcess.StartAsync(app, NoGrace);
        using var onB = new HttpClient { BaseAddress = new Uri(b.Url) };
        await WaitForReplicasAsync(2);

        Assert.Equal("healthy", (await WorkspacesCheckAsync(a)).Status);
        Assert.Equal("healthy", (await WorkspacesCheckAsync(onB)).Status);

        var elsewhere = Path.Combine(app.DataRoot, "elsewhere");
        await using var c = await ServerProcess.StartAsync(app, new Dictionary<string, string>(NoGrace) { ["Harness__WorkspacesPath"] = elsewhere });
        using var onC = new HttpClient { BaseAddress = new Uri(c.Url) };
        await WaitForReplicasAsync(3);

        var seenByA = await WorkspacesCheckAsync(a, HttpStatusCode.ServiceUnavailable);
        Assert.Equal("unhealthy", seenByA.Status);
        Assert.StartsWith("not shared: ", seenByA.Description);
        Assert.Contains($"its Harness:WorkspacesPath is {elsewhere}", seenByA.Description);
        var seenByC = await WorkspacesCheckAsync(onC, HttpStatusCode.ServiceUnavailable);
        Assert.StartsWith("not shared: ", seenByC.Description);
        Assert.Contains(Path.Combine(elsewhere, ".replicas"), seenByC.Description);
        Assert.Contains($"its Harness:WorkspacesPath is {Path.Combine(app.DataRoot, "workspaces")}", seenByC.Description);
    }

    private async Task WaitForReplicasAsync(long count)
    {
        for (var i = 0; i < 150 && await app.CountAsync("SELECT count(*) FROM replica_workspaces") < count; i++)
        {
            await Task.Delay(100);
        }

        Assert.Equal(count, await app.CountAsync("SELECT count(*) FROM replica_workspaces"));
    }

    private static async Task<(string? Status, string Description)> WorkspacesCheckAsync(HttpClient client, HttpStatusCode? expected = null)
    {
        using var response = await client.GetAsync("/readyz");
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        if (expected is { } status)
        {
            Assert.Equal(status, response.StatusCode);
        }

        var check = body.GetProperty("checks").GetProperty("workspaces");
        return (check.GetProperty("status").GetString(), check.GetProperty("description").GetString() ?? "");
    }
}
