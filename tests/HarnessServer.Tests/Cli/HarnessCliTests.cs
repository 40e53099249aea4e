using System.Text.Json;
using HarnessServer.Cli;
using HarnessServer.Client;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Cli;

/// <summary>
/// The <c>harness</c> command line run in-process against the real server (its entry point, its HTTP through the
/// test host): signed in with a token, a call, an approval decided by a second identity, policies planned and applied
/// (and refused with exit 2 when the level moved), the audit export verified offline and its tampering caught.
/// Each test has its own tenant.
/// </summary>
public sealed class HarnessCliTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private const string AskToWrite = """
        default: deny
        rules:
          - tool: "fs.read"
            effect: allow
          - tool: "fs.write"
            effect: ask
            args: { path: "**" }
        """;

    [Fact]
    public async Task Call_with_a_token_from_the_environment_shows_the_decision_and_result()
    {
        const string tenant = "cli-call";
        await StoreOrgAsync(tenant, AskToWrite + "\n  - tool: \"fs.list\"\n    effect: allow\n");
        var alice = app.Issuer.CreateToken("alice", tenant, ["platform"]);

        var ran = await HarnessAsync(alice, "call", "fs.list", """{"path":"."}""");
        Assert.Equal(0, ran.Exit);
        Shows(ran, "fs.list: succeeded");
        Shows(ran, "decision: allow by org");

        var denied = await HarnessAsync(alice, "--json", "call", "shell.exec", """{"command":"rm -rf /"}""");
        Assert.Equal(5, denied.Exit);
        var body = JsonDocument.Parse(denied.Out).RootElement;
        Assert.Equal("denied", body.GetProperty("status").GetString());
        Assert.Equal("deny", body.GetProperty("decision").GetProperty("effect").GetString());

        var unsigned = await HarnessAsync(null, "call", "fs.list", "{}");
        Assert.Equal(4, unsigned.Exit);
        Assert.Contains("not signed in", unsigned.Err);

        var badArguments = await HarnessAsync(alice, "call", "fs.list", "[1]");
        Assert.Equal(1, badArguments.Exit);
        Assert.Contains("must be a JSON object", badArguments.Err);
    }

    [Fact]
    public async Task A_held_call_is_approved_from_a_second_identity_and_then_runs()
    {
        const string tenant = "cli-approve";
        await StoreOrgAsync(tenant, AskToWrite);
        var alice = app.Issuer.CreateToken("alice", tenant, ["platform"]);
        var bob = app.Issuer.CreateToken("bob", tenant, ["platform"], ["harness.approver"]);

        var held = await HarnessAsync(alice, "--json", "call", "fs.write", """{"path":"notes.txt","content":"hi"}""");
        Assert.Equal(6, held.Exit);
        var call = JsonDocument.Parse(held.Out).RootElement;
        var approval = call.GetProperty("approvalId").GetGuid();

        // The requester cannot decide their own call.
        var own = await HarnessAsync(alice, "approvals", "approve", approval.ToString());
        Assert.Equal(1, own.Exit);

        var listed = await HarnessAsync(bob, "approvals", "list");
        Assert.Equal(0, listed.Exit);
        Shows(listed, approval.ToString());
        Shows(listed, "fs.write");

        var approved = await HarnessAsync(bob, "--json", "approvals", "approve", approval.ToString(), "--comment", "fine");
        Assert.Equal(0, approved.Exit);
        var decided = JsonDocument.Parse(approved.Out).RootElement;
        Assert.Equal("approved", decided.GetProperty("status").GetString());
        Assert.Equal("bob", decided.GetProperty("decidedBy").GetString());

        // The approved call runs: its session's event stream (the typed client's) says so.
        using var http = app.ClientWithToken(alice);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var session = decided.GetProperty("sessionId").GetGuid();
        var callId = call.GetProperty("id").GetGuid();
        await foreach (var change in new HarnessClient(http).StreamSessionEventsAsync(session, timeout.Token))
        {
            if (change.Id == callId && change.Status is "succeeded" or "failed")
            {
                Assert.Equal("succeeded", change.Status);
                break;
            }
        }

        var again = await HarnessAsync(bob, "approvals", "reject", approval.ToString());
        Assert.Equal(1, again.Exit);
        Assert.Contains("409", again.Err);
    }

    [Fact]
    public async Task Policies_plan_shows_the_diff_per_level_and_apply_stores_it()
    {
        const string tenant = "cli-policies";
        await StoreOrgAsync(tenant, AskToWrite);
        var admin = app.Issuer.CreateToken("root", tenant, roles: ["harness.admin"]);
        var folder = PolicyFolder(tenant, AskToWrite.Replace("effect: ask", "effect: allow"), ("teams/platform.yaml", "rules:\n  - tool: \"fs.list\"\n    effect: allow\n"));

        var plan = await HarnessAsync(admin, "policies", "plan", folder);
        Assert.Equal(0, plan.Exit);
        Shows(plan, "org                      change    (stored v1)");
        Shows(plan, "-     effect: ask");
        Shows(plan, "+     effect: allow");
        Shows(plan, "team:platform            create    (not stored)");
        Shows(plan, "Plan: 1 to create, 1 to change, 0 unchanged.");

        var apply = await HarnessAsync(admin, "policies", "apply", folder);
        Assert.Equal(0, apply.Exit);
        Shows(apply, "org: stored version 2");
        Shows(apply, "team:platform: stored version 1");

        using var http = app.ClientWithToken(admin);
        var stored = await new HarnessClient(http).GetPolicyFileAsync(PolicyLevel.Org, default);
        Assert.Equal(2, stored!.Version);
        Assert.Contains("effect: allow", stored.Content);
        Assert.DoesNotContain("effect: ask", stored.Content);

        var replan = await HarnessAsync(admin, "policies", "plan", folder);
        Shows(replan, "Plan: 0 to create, 0 to change, 2 unchanged.");
    }

    [Fact]
    public async Task Apply_of_a_plan_whose_level_was_stored_again_exits_2_and_keeps_the_other_change()
    {
        const string tenant = "cli-stale";
        await StoreOrgAsync(tenant, AskToWrite);
        var admin = app.Issuer.CreateToken("root", tenant, roles: ["harness.admin"]);
        var folder = PolicyFolder(tenant, AskToWrite.Replace("effect: ask", "effect: allow"));
        var planFile = Path.Combine(app.DataRoot, $"{tenant}-plan.json");
        Assert.Equal(0, (await HarnessAsync(admin, "policies", "plan", folder, "--out", planFile)).Exit);

        // Another admin stores the org level after the plan was made.
        var theirs = AskToWrite + "\n  - tool: \"fs.list\"\n    effect: allow\n";
        await StoreOrgAsync(tenant, theirs);

        var apply = await HarnessAsync(admin, "policies", "apply", folder, "--plan", planFile);
        Assert.Equal(2, apply.Exit);
        Assert.Contains("org was stored again since the plan (which saw version 1)", apply.Err);
        using var http = app.ClientWithToken(admin);
        var stored = await new HarnessClient(http).GetPolicyFileAsync(PolicyLevel.Org, default);
        Assert.Equal(2, stored!.Version);
        Assert.Equal(theirs, stored.Content);

        // A folder edited after its plan is not applied either.
        File.AppendAllText(Path.Combine(folder, "org.yaml"), "# edited\n");
        var edited = await HarnessAsync(admin, "policies", "apply", folder, "--plan", planFile);
        Assert.Equal(1, edited.Exit);
        Assert.Contains("changed since the plan was made", edited.Err);
    }

    [Fact]
    public async Task Audit_export_verifies_offline_and_a_tampered_line_fails_naming_its_seq()
    {
        const string tenant = "cli-audit";
        await StoreOrgAsync(tenant, AskToWrite + "\n  - tool: \"fs.list\"\n    effect: allow\n");
        var alice = app.Issuer.CreateToken("alice", tenant, ["platform"]);
        var listed = await HarnessAsync(alice, "call", "fs.list", """{"path":"."}""");
        Assert.True(listed.Exit == 0, listed.Out + listed.Err);
        Assert.Equal(5, (await HarnessAsync(alice, "call", "shell.exec", """{"command":"ls"}""")).Exit);
        var auditor = app.Issuer.CreateToken("carol", tenant, roles: ["harness.auditor"]);
        var export = Path.Combine(app.DataRoot, $"{tenant}.jsonl");

        var exported = await HarnessAsync(auditor, "audit", "export", "-o", export);
        Assert.True(exported.Exit == 0, exported.Out + exported.Err);
        var lines = File.ReadAllLines(export);
        Assert.True(lines.Length >= 3, exported.Out);

        // Offline: no token, and a server address nothing listens on.
        var good = await HarnessAsync(null, "--server", "http://127.0.0.1:9", "audit", "verify", export, "--checkpoint", export + ".checkpoint.json");
        Assert.True(good.Exit == 0, good.Out + good.Err);
        Shows(good, $"OK: {lines.Length} events verified, head seq {lines.Length}");
        Shows(good, $"signed checkpoint at seq {lines.Length}");

        var tampered = Path.Combine(app.DataRoot, $"{tenant}-tampered.jsonl");
        lines[1] = lines[1].Replace("\"name\":\"", "\"name\":\"X", StringComparison.Ordinal);
        File.WriteAllLines(tampered, lines);
        var bad = await HarnessAsync(null, "audit", "verify", tampered, "--checkpoint", export + ".checkpoint.json");
        Assert.Equal(3, bad.Exit);
        Shows(bad, "FAILED at seq 2: Seq 2's hash does not match its content.");

        // The tail cut off: the signed checkpoint is not reached.
        var cut = Path.Combine(app.DataRoot, $"{tenant}-cut.jsonl");
        File.WriteAllLines(cut, lines.Take(1));
        var shortened = await HarnessAsync(null, "audit", "verify", cut, "--checkpoint", export + ".checkpoint.json");
        Assert.Equal(3, shortened.Exit);
        Shows(shortened, "FAILED at seq 2:");

        // A key pinned with --key that did not sign the checkpoint fails it.
        var otherKey = Path.Combine(app.DataRoot, $"{tenant}-other.pem");
        using (var other = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256))
        {
            File.WriteAllText(otherKey, other.ExportSubjectPublicKeyInfoPem());
        }

        var wrongKey = await HarnessAsync(null, "audit", "verify", export, "--checkpoint", export + ".checkpoint.json", "--key", otherKey);
        Assert.Equal(3, wrongKey.Exit);
        Shows(wrongKey, "is not signed by the given key");
    }

    [Fact]
    public async Task Tools_and_permissions_explain_read_the_registry_and_the_deciding_rule()
    {
        const string tenant = "cli-explain";
        await StoreOrgAsync(tenant, AskToWrite);
        var admin = app.Issuer.CreateToken("root", tenant, roles: ["harness.admin"]);

        var tools = await HarnessAsync(admin, "tools");
        Assert.Equal(0, tools.Exit);
        Shows(tools, "fs.write");
        Shows(tools, "shell.exec");

        var explained = await HarnessAsync(admin, "--json", "permissions", "explain", "alice", "fs.write", """{"path":"a.txt","content":"x"}""", "--teams", "platform");
        Assert.Equal(0, explained.Exit);
        var result = JsonDocument.Parse(explained.Out).RootElement;
        Assert.Equal("ask", result.GetProperty("effect").GetString());
        Assert.Equal("org", result.GetProperty("level").GetString());

        var member = app.Issuer.CreateToken("alice", tenant, ["platform"]);
        var forbidden = await HarnessAsync(member, "permissions", "explain", "bob", "fs.write");
        Assert.Equal(1, forbidden.Exit);
        Assert.Contains("403", forbidden.Err);
    }

    private static void Shows((int Exit, string Out, string Err) result, string expected) =>
        Assert.True(result.Out.Contains(expected, StringComparison.Ordinal), $"'{expected}' is not in the output:\n{result.Out}\n{result.Err}");

    private string PolicyFolder(string tenant, string org, params (string Path, string Content)[] files)
    {
        var folder = Path.Combine(app.DataRoot, "cli-policies", tenant);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "org.yaml"), org);
        foreach (var (path, content) in files)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(folder, path))!);
            File.WriteAllText(Path.Combine(folder, path), content);
        }

        return folder;
    }

    private async Task StoreOrgAsync(string tenant, string yaml)
    {
        using var http = app.ClientFor("root", tenant, roles: ["harness.admin"]);
        await new HarnessClient(http).PutPolicyFileAsync(PolicyLevel.Org, yaml, null, default);
    }

    private async Task<(int Exit, string Out, string Err)> HarnessAsync(string? token, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var environment = new CliEnvironment(output, error, name => name == "HARNESS_TOKEN" ? token : null,
            Path.Combine(app.DataRoot, "cli-config"), args.Contains("--server") ? null : () => app.Server.CreateHandler());
        var exit = await HarnessCli.RunAsync(args.Contains("--server") ? args : ["--server", "http://localhost", .. args], environment);
        return (exit, output.ToString(), error.ToString());
    }
}
