using System.Net;
using System.Text.Json;
using HarnessServer.Audit;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Policies;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Policies;

/// <summary>
/// What the console's policy editor asks of the policy services: a draft checked against the org's locks, a draft
/// simulated without being stored, and a revert stored as an audited version.
/// </summary>
public sealed partial class PolicyAdminApiTests
{
    private const string DraftTenant = "policy-drafts";

    private const string LockedOrg = """
        default: deny
        rules:
          - tool: fs.read
            effect: allow
          - tool: "http.*"
            effect: deny
            locked: true
            reason: no egress from agents
          - tool: shell.exec
            effect: deny
            locked: true
            args: { command: "rm *" }
        """;

    private async Task StoreAsync(string tenant, PolicyLevelKey level, string content)
    {
        // The tenant exists once one of its users has made a request.
        using var admin = app.ClientFor("root", tenant, roles: [HarnessRoles.Admin]);
        (await admin.GetAsync("/v1/me")).EnsureSuccessStatusCode();
        await app.Service<PolicyService>().StoreAsync(app.Service<AuditChain>(), tenant, level, content, "api",
            new AuditActor("root", "Root"), null, TimeProvider.System, CancellationToken.None);
    }

    [Fact]
    public async Task A_team_draft_that_overrides_a_locked_org_rule_is_refused_at_the_rule_with_the_lock_named()
    {
        await StoreAsync(DraftTenant, PolicyLevelKey.Org, LockedOrg);
        var drafts = app.Service<PolicyDrafts>();
        const string draft = "rules:\n  - tool: fs.write\n    effect: allow\n  - tool: http.fetch\n    effect: allow\n";

        var result = await drafts.CheckAsync(DraftTenant, PolicyLevelKey.Team("web"), draft, CancellationToken.None);

        Assert.False(result.IsValid);
        var error = Assert.Single(result.Errors);
        Assert.Equal((4, 5), (error.Line, error.Column));
        Assert.Contains("rules[1]: allow http.fetch cannot take effect: org rule 1", error.Message, StringComparison.Ordinal);
        Assert.Contains("no egress from agents) is locked", error.Message, StringComparison.Ordinal);
        Assert.Contains("no team or user rule can override a locked rule", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    // The same effect as the lock says nothing untrue; a lock on some arguments leaves the rest to the team.
    [InlineData("rules:\n  - tool: http.fetch\n    effect: deny\n")]
    [InlineData("rules:\n  - tool: shell.exec\n    effect: allow\n    args: { command: \"git *\" }\n")]
    [InlineData("rules:\n  - tool: \"*\"\n    effect: ask\n")]
    public async Task A_team_draft_that_a_lock_does_not_overrule_passes(string draft)
    {
        await StoreAsync(DraftTenant, PolicyLevelKey.Org, LockedOrg);

        var result = await app.Service<PolicyDrafts>().CheckAsync(DraftTenant, PolicyLevelKey.User("uma"), draft, CancellationToken.None);

        Assert.True(result.IsValid, string.Join("; ", result.Errors));
    }

    [Fact]
    public async Task A_draft_with_parse_errors_reports_each_at_its_line_and_column()
    {
        const string draft = "rules:\n  - tool: fs.read\n    effect: maybe\n  - tool: fs.write\n    colour: blue\n    effect: allow\n";

        var result = await app.Service<PolicyDrafts>().CheckAsync(DraftTenant, PolicyLevelKey.Team("web"), draft, CancellationToken.None);

        Assert.Equal([(3, 13), (5, 5)], result.Errors.Select(e => (e.Line, e.Column)));
    }

    [Fact]
    public async Task Simulating_a_draft_decides_with_it_and_leaves_the_stored_policy_in_force()
    {
        await StoreAsync(DraftTenant, PolicyLevelKey.Org, LockedOrg);
        var draft = PolicyParser.Parse("rules:\n  - tool: fs.write\n    effect: allow\n    args: { path: \"src/**\" }\n", PolicyLevel.Team, "policy-drafts/teams/sim.yaml").Document!;
        var drafts = app.Service<PolicyDrafts>();
        var args = new Dictionary<string, string?> { ["path"] = "src/a.txt" };

        var simulated = await drafts.SimulateAsync(DraftTenant, PolicyLevelKey.Team("sim"), draft, "sam", ["sim"], "fs.write", args, "/workspace", CancellationToken.None);
        var locked = await drafts.SimulateAsync(DraftTenant, PolicyLevelKey.Team("sim"), draft, "sam", ["sim"], "http.fetch", new Dictionary<string, string?>(), "/workspace", CancellationToken.None);

        Assert.Equal((PolicyEffect.Allow, PolicyLevel.Team, 0), (simulated.Effect, simulated.Level, simulated.Index));
        Assert.Equal((PolicyEffect.Deny, PolicyLevel.Org, true), (locked.Effect, locked.Level, locked.DecidedBy.Locked));
        var stored = (await app.Service<PolicyService>().ResolverForAsync(DraftTenant, "sam", ["sim"], CancellationToken.None))
            .Decide("fs.write", args, "/workspace");
        Assert.Equal((PolicyEffect.Deny, PolicyLevel.Org), (stored.Effect, stored.Level));
    }

    [Fact]
    public async Task A_revert_stores_the_old_content_as_the_next_version_audited_with_what_it_restores()
    {
        const string tenant = "policy-revert";
        await StoreAsync(tenant, PolicyLevelKey.Team("ops"), "rules:\n  - tool: fs.read\n    effect: allow\n");
        await StoreAsync(tenant, PolicyLevelKey.Team("ops"), "rules:\n  - tool: fs.read\n    effect: deny\n");
        var policies = app.Service<PolicyService>();
        var actor = new AuditActor("root", "Root");

        var stale = await Assert.ThrowsAsync<HarnessError>(() => policies.RevertAsync(
            app.Service<AuditChain>(), tenant, PolicyLevelKey.Team("ops"), 1, actor, 1, TimeProvider.System, CancellationToken.None));
        var missing = await Assert.ThrowsAsync<HarnessError>(() => policies.RevertAsync(
            app.Service<AuditChain>(), tenant, PolicyLevelKey.Team("ops"), 9, actor, 2, TimeProvider.System, CancellationToken.None));
        var reverted = await policies.RevertAsync(
            app.Service<AuditChain>(), tenant, PolicyLevelKey.Team("ops"), 1, actor, 2, TimeProvider.System, CancellationToken.None);

        Assert.Equal((ErrorKind.PreconditionFailed, "version_mismatch"), (stale.Kind, stale.Code));
        Assert.Equal((ErrorKind.NotFound, "policy_version_not_found"), (missing.Kind, missing.Code));
        Assert.Equal((3, "revert"), (reverted.Version, reverted.Origin));
        Assert.Contains("effect: allow", reverted.Content, StringComparison.Ordinal);
        var decision = (await policies.ResolverForAsync(tenant, "olga", ["ops"], CancellationToken.None)).Decide("fs.read", new Dictionary<string, string?>());
        Assert.Equal(PolicyEffect.Allow, decision.Effect);

        using var auditor = app.ClientFor("rev", tenant, roles: [HarnessRoles.Auditor]);
        var events = await (await auditor.GetAsync("/v1/audit/events?limit=1000")).JsonAsync(HttpStatusCode.OK);
        var last = events.GetProperty("events").EnumerateArray().Last(e => e.GetProperty("type").GetString() == "policy.changed");
        Assert.Equal("root", last.GetProperty("actor").GetProperty("id").GetString());
        var payload = last.GetProperty("payload");
        Assert.Equal((2, 3, 1, "revert"), (payload.GetProperty("beforeVersion").GetInt32(), payload.GetProperty("afterVersion").GetInt32(),
            payload.GetProperty("restoresVersion").GetInt32(), payload.GetProperty("origin").GetString()));
    }
}
