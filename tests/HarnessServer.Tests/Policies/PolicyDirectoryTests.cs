using HarnessServer.Policies;

namespace HarnessServer.Tests.Policies;

public sealed class PolicyDirectoryTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("policies-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private void Write(string relative, string text)
    {
        var path = Path.Combine(_root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    [Fact]
    public void Loads_org_team_and_user_files_per_tenant()
    {
        Write("acme/org.yaml", "default: ask\nrules:\n  - tool: fs.read\n    effect: allow\n");
        Write("acme/teams/platform.yml", "rules:\n  - tool: fs.write\n    effect: allow\n");
        Write("acme/users/alice.json", "{\"rules\": [{\"tool\": \"shell.exec\", \"effect\": \"deny\"}]}");
        Write("globex/teams/ops.yaml", "rules: []\n");

        var contents = PolicyDirectory.Load(_root);

        Assert.Empty(contents.Errors);
        var acme = contents.Tenants["acme"];
        Assert.Equal(PolicyEffect.Ask, acme.Org.Default);
        Assert.Equal(PolicyLevel.Team, acme.Teams["platform"].Level);
        Assert.Equal(PolicyEffect.Deny, acme.Users["alice"].Rules.Single().Effect);
        Assert.Null(contents.Tenants["globex"].Org.Default);
        Assert.Equal(PolicyEffect.Deny, PolicyCompiler.Compile(contents.Tenants["globex"]).OrgDefault.Effect);
    }

    [Fact]
    public void Leaves_out_a_tenant_with_any_invalid_file_and_reports_where()
    {
        Write("acme/org.yaml", "rules: []\n");
        Write("acme/users/bob.yaml", "rules:\n  - tool: fs.read\n    effect: allow\n    locked: true\n");
        Write("globex/org.yaml", "rules: []\n");

        var contents = PolicyDirectory.Load(_root);

        Assert.False(contents.Tenants.ContainsKey("acme"));
        Assert.True(contents.Tenants.ContainsKey("globex"));
        var error = Assert.Single(contents.Errors);
        Assert.EndsWith(Path.Combine("acme", "users", "bob.yaml"), error.Source);
        Assert.Equal((4, 13), (error.Line, error.Column));
    }

    [Fact]
    public void Refuses_two_files_for_one_level()
    {
        Write("acme/teams/ops.yaml", "rules: []\n");
        Write("acme/teams/ops.json", "{}");

        var contents = PolicyDirectory.Load(_root);

        Assert.Empty(contents.Tenants);
        Assert.Contains("more than one file", Assert.Single(contents.Errors).Message);
    }

    [Fact]
    public void Refuses_unexpected_files_beside_the_org_policy()
    {
        Write("acme/0rg.yaml", "default: ask\n");

        var contents = PolicyDirectory.Load(_root);

        Assert.Empty(contents.Tenants);
        Assert.Contains("unexpected policy file", Assert.Single(contents.Errors).Message);
    }
}
