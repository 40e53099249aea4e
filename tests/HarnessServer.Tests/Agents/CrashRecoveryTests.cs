using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Agents;

/// <summary>
/// A real server process is killed while a model-proposed call is running, and a freshly started one finishes the
/// turn: the call is reported as interrupted and its side effect happens once.
/// </summary>
[Collection(AgentCollection.Name)]
public sealed class CrashRecoveryTests(CrashRecoveryTests.CrashApplication app) : IClassFixture<CrashRecoveryTests.CrashApplication>
{
    public const string Tenant = "crash";

    /// <summary>Provides the database, issuer and model; its own host only administers (its recovery rarely runs).</summary>
    public sealed class CrashApplication : HarnessApplication
    {
        public ScriptedModelServer Model { get; private set; } = null!;

        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["Harness:Model:Endpoint"] = Model.Endpoint;
            settings["Harness:Model:Id"] = "scripted-model";
            settings["Harness:Agent:RecoveryInterval"] = "01:00:00";
        }

        public override async Task InitializeAsync()
        {
            Model = await ScriptedModelServer.StartAsync();
            await base.InitializeAsync();
            using var admin = ClientFor("admin", Tenant, roles: [HarnessRoles.Admin]);
            (await admin.PutAsync("/v1/admin/policies/org", new StringContent("""
                default: deny
                rules:
                  - tool: "fs.*"
                    effect: allow
                  - tool: "slow.job"
                    effect: allow
                """, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();
            (await admin.PostAsJsonAsync("/v1/admin/tools", new
            {
                name = "slow.job",
                description = "Appends a line to runs.txt, then works for a minute.",
                kind = "command",
                argv = new[] { "sh", "-c", "echo run >> runs.txt; sleep 60" },
                schema = new { type = "object", properties = new { } },
            })).EnsureSuccessStatusCode();
        }
    }

    [Fact]
    public async Task A_call_running_when_the_server_dies_is_reported_interrupted_and_never_run_twice()
    {
        app.Model.Reset();
        app.Model.Call("slow_job", new { }).Reply("The job was interrupted; I did not run it again.");
        var token = app.Issuer.CreateToken("maria", Tenant, ["web"]);

        Guid session;
        await using (var first = await StartServerAsync(app))
        {
            using var client = first.Client(token);
            session = (await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
            var runs = Path.Combine(app.DataRoot, "workspaces", Tenant, session.ToString(), "runs.txt");

            var sending = client.PostAsJsonAsync($"/v1/sessions/{session}/messages", new { content = "Run the slow job." });
            await WaitUntilAsync(() => File.Exists(runs), "the job to start");
            first.Kill();
            await Assert.ThrowsAnyAsync<Exception>(() => sending);
        }

        await using var second = await StartServerAsync(app);
        using var restarted = second.Client(token);
        var history = await (await restarted.GetAsync($"/v1/sessions/{session}/messages")).JsonAsync(HttpStatusCode.OK);
        var turnId = history[0].GetProperty("turnId").GetGuid();

        JsonElement turn = default;
        await WaitUntilAsync(async () =>
        {
            turn = await (await restarted.GetAsync($"/v1/sessions/{session}/turns/{turnId}")).JsonAsync(HttpStatusCode.OK);
            return turn.GetProperty("status").GetString() == "completed";
        }, "the restarted server to finish the turn");

        var call = Assert.Single(turn.GetProperty("toolCalls").EnumerateArray());
        Assert.Equal("interrupted", call.GetProperty("status").GetString());
        Assert.Equal(["run"], File.ReadAllLines(Path.Combine(app.DataRoot, "workspaces", Tenant, session.ToString(), "runs.txt")));
        var told = app.Model.Requests[^1].GetProperty("messages").EnumerateArray().Single(m => m.GetProperty("role").GetString() == "tool");
        Assert.Contains("interrupted", told.GetProperty("content").GetString());
        var calls = (await (await restarted.GetAsync($"/v1/sessions/{session}")).JsonAsync(HttpStatusCode.OK)).GetProperty("toolCalls");
        Assert.Equal("interrupted", Assert.Single(calls.EnumerateArray()).GetProperty("status").GetString());
    }

    private static Task WaitUntilAsync(Func<bool> condition, string what) => WaitUntilAsync(() => Task.FromResult(condition()), what);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"Timed out waiting for {what}.");
            await Task.Delay(200);
        }
    }

    private static Task<ServerProcess> StartServerAsync(CrashApplication app) => ServerProcess.StartAsync(app, new Dictionary<string, string>
    {
        ["Harness__Model__Endpoint"] = app.Model.Endpoint,
        ["Harness__Model__Id"] = "scripted-model",
        ["Harness__Agent__RecoveryInterval"] = "00:00:00.250",
        // The killed process's lease on the session runs out before its call is recorded interrupted.
        ["Harness__Recovery__LeaseDuration"] = "00:00:02",
        ["Harness__Recovery__SweepInterval"] = "00:00:00.250",
    });
}
