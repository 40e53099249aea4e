using HarnessServer.Cli;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Cli;

/// <summary><c>harness chat</c>: one agent turn over a scripted model, its tool calls shown, then the reply.</summary>
public sealed class HarnessChatTests(HarnessChatTests.ChatApplication app) : IClassFixture<HarnessChatTests.ChatApplication>
{
    public sealed class ChatApplication : HarnessApplication
    {
        public ScriptedModelServer Model { get; private set; } = null!;

        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["Harness:Model:Endpoint"] = Model.Endpoint;
            settings["Harness:Model:ApiKey"] = "test-key";
            settings["Harness:Model:Id"] = "scripted-model";
        }

        public override async Task InitializeAsync()
        {
            Model = await ScriptedModelServer.StartAsync();
            await base.InitializeAsync();
        }

        public override async ValueTask DisposeAsync()
        {
            await base.DisposeAsync();
            await Model.DisposeAsync();
        }
    }

    [Fact]
    public async Task Chat_runs_a_turn_and_shows_its_tool_calls_and_the_reply()
    {
        const string tenant = "cli-chat";
        using (var admin = app.ClientFor("root", tenant, roles: ["harness.admin"]))
        {
            await new HarnessServer.Client.HarnessClient(admin).PutPolicyFileAsync(HarnessServer.Client.PolicyLevel.Org,
                "default: deny\nrules:\n  - tool: \"fs.write\"\n    effect: allow\n", null, default);
        }

        app.Model.Call("fs_write", new { path = "todo.txt", content = "buy milk" }).Reply("I wrote todo.txt.");
        var output = new StringWriter();
        var error = new StringWriter();
        var token = app.Issuer.CreateToken("maria", tenant, ["web"]);
        var environment = new CliEnvironment(output, error, name => name == "HARNESS_TOKEN" ? token : null,
            Path.Combine(app.DataRoot, "cli-config"), () => app.Server.CreateHandler());

        var exit = await HarnessCli.RunAsync(["--server", "http://localhost", "chat", "note that I need milk"], environment);

        var shown = output.ToString();
        Assert.True(exit == 0, shown + error);
        Assert.Contains("  [fs.write] succeeded", shown);
        Assert.Contains(": completed", shown);
        Assert.EndsWith("I wrote todo.txt." + Environment.NewLine, shown);
    }
}
