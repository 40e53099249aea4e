using System.Diagnostics;
using HarnessServer.Sandbox;

namespace HarnessServer.Tests.Sandbox;

/// <summary>Each tenant's sandbox runs as its own host user, and no other user on the host can reach its workspace.</summary>
[Collection(SandboxCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class TenantSandboxUserTests(SandboxFixture fixture) : IDisposable
{
    private readonly Workspace _acme = fixture.NewWorkspace("acme");
    private readonly Workspace _globex = fixture.NewWorkspace("globex");

    public void Dispose()
    {
        _acme.Dispose();
        _globex.Dispose();
    }

    [Fact]
    public async Task Each_tenants_sandbox_runs_as_its_own_non_root_user()
    {
        var acme = await fixture.ShellAsync(_acme, "id -u; id -g");
        var globex = await fixture.ShellAsync(_globex, "id -u; id -g");

        Assert.Equal($"{_acme.Owner.Uid}\n{_acme.Owner.Gid}\n", acme.Stdout);
        Assert.Equal($"{_globex.Owner.Uid}\n{_globex.Owner.Gid}\n", globex.Stdout);
        Assert.NotEqual(_acme.Owner.Uid, _globex.Owner.Uid);
        Assert.All([_acme.Owner.Uid, _globex.Owner.Uid], uid => Assert.True(uid > 65535));
    }

    [Fact]
    public async Task Files_from_shell_exec_and_fs_write_belong_to_the_tenants_user()
    {
        await fixture.ShellAsync(_acme, "mkdir -p made/by && echo x > made/by/shell.txt");
        _acme.Write("made/by/tool.txt", "x");

        if (fixture.Root.IsRoot)
        {
            foreach (var path in new[] { "made", "made/by", "made/by/shell.txt", "made/by/tool.txt" })
            {
                Assert.Equal(_acme.Owner.Uid, NativeTest.OwnerOf(Path.Combine(_acme.FullPath, path)));
            }
        }
    }

    [Fact]
    public async Task A_sandbox_cannot_see_another_tenants_workspace_by_its_host_path()
    {
        _globex.Write("secret.txt", "globex only");

        var result = await fixture.ShellAsync(_acme,
            $"ls {_globex.FullPath}; cat {_globex.FullPath}/secret.txt; ls {Path.GetDirectoryName(_globex.FullPath)}");

        Assert.NotEqual(0, result.ExitCode);
        Assert.DoesNotContain("globex only", result.Stdout);
        Assert.DoesNotContain("secret.txt", result.Stdout);
    }

    [Fact]
    public async Task A_sandbox_of_one_tenant_given_another_tenants_workspace_cannot_mount_it()
    {
        _globex.Write("secret.txt", "globex only");

        // As if a bug bound the wrong folder: bwrap, already the first tenant's user, cannot reach it.
        var result = await fixture.Sandbox.RunAsync(new SandboxCommand
        {
            WorkspacePath = _globex.FullPath,
            User = _acme.Owner,
            Command = "cat /workspace/secret.txt; ls /workspace",
        }, CancellationToken.None);

        if (fixture.Root.IsRoot)
        {
            Assert.NotEqual(0, result.ExitCode);
            Assert.DoesNotContain("globex only", result.Stdout);
            Assert.DoesNotContain("secret.txt", result.Stdout);
        }
    }

    [Theory]
    [InlineData("ls {workspace}")]
    [InlineData("cat {workspace}/secret.txt")]
    [InlineData("ls {tenant}")]
    [InlineData("ls {workspace}/..")]
    public async Task Another_host_user_cannot_list_or_read_a_workspace_it_knows_the_path_of(string command)
    {
        if (!fixture.Root.IsRoot)
        {
            return;
        }

        _globex.Write("secret.txt", "globex only");
        var line = command.Replace("{workspace}", _globex.FullPath).Replace("{tenant}", Path.GetDirectoryName(_globex.FullPath));

        // The other tenant's user, and nobody, which every sandbox ran as before tenants had their own users.
        foreach (var user in new[] { _acme.Owner, SandboxUser.ProbeUserOf(fixture.Options) })
        {
            var (exitCode, output) = await AsHostUserAsync(user, line);

            Assert.NotEqual(0, exitCode);
            Assert.Contains("Permission denied", output);
            Assert.DoesNotContain("globex only", output);
        }
    }

    [Fact]
    public async Task The_tenants_own_user_can_reach_its_workspace_on_the_host()
    {
        if (!fixture.Root.IsRoot)
        {
            return;
        }

        _globex.Write("secret.txt", "globex only");

        var (exitCode, output) = await AsHostUserAsync(_globex.Owner, $"cat {_globex.FullPath}/secret.txt");

        Assert.Equal(0, exitCode);
        Assert.Equal("globex only", output);
    }

    [Fact]
    public async Task The_hard_link_check_trusts_the_tenants_own_user_only()
    {
        var made = await fixture.ShellAsync(_acme, "echo mine > a.txt && ln a.txt b.txt");
        Assert.Equal(0, made.ExitCode);

        Assert.Equal("mine\n", _acme.Read("b.txt").Content);
        if (fixture.Root.IsRoot)
        {
            // A file with two names that another tenant's user owns could be that tenant's file linked in.
            var theirs = Path.Combine(_acme.FullPath, "theirs.txt");
            File.WriteAllText(theirs, "not acme's");
            Assert.Equal(0, NativeTest.Chown(theirs, (uint)_globex.Owner.Uid, (uint)_globex.Owner.Gid));
            Assert.Equal(0, NativeTest.Link(theirs, Path.Combine(_acme.FullPath, "theirs-too.txt")));

            Assert.Equal(SandboxErrors.HardLink, Assert.Throws<SandboxException>(() => _acme.Read("theirs.txt")).Code);
        }
    }

    [Fact]
    public async Task A_workspace_of_the_shared_sandbox_user_is_handed_to_the_tenant_when_opened()
    {
        if (!fixture.Root.IsRoot)
        {
            return;
        }

        // A workspace as the server made it before tenants had their own users: everything the shared user's, and a
        // tenant folder that is root's with mode 0711.
        var shared = SandboxUser.ProbeUserOf(fixture.Options);
        var session = Guid.NewGuid().ToString("N");
        string path;
        using (var old = fixture.Root.Create("initech", session, shared))
        {
            path = old.FullPath;
            old.Write("notes/old.txt", "before");
            Assert.Equal(0, (await fixture.Sandbox.RunAsync(
                new SandboxCommand { WorkspacePath = old.FullPath, User = shared, Command = "echo run > ran.txt" }, CancellationToken.None)).ExitCode);
        }

        Assert.Equal(0, NativeTest.Link(Path.Combine(path, "notes/old.txt"), Path.Combine(path, "linked.txt")));
        var tenantFolder = Path.GetDirectoryName(path)!;
        Assert.Equal(0, NativeTest.Chown(tenantFolder, 0, 0));
        File.SetUnixFileMode(tenantFolder, (UnixFileMode)0b111_001_001);
        Assert.Equal(shared.Uid, NativeTest.OwnerOf(path));

        using var workspace = fixture.Root.Open("initech", session, SandboxFixture.UserOf("initech"));
        var result = await fixture.ShellAsync(workspace, "cat ran.txt && echo after >> ran.txt && echo new > new.txt && ls -ln notes");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal("run\nafter\n", File.ReadAllText(Path.Combine(path, "ran.txt")));
        Assert.Equal(workspace.Owner.Uid, NativeTest.OwnerOf(path));
        Assert.Equal(workspace.Owner.Uid, NativeTest.OwnerOf(Path.Combine(path, "notes")));
        Assert.Equal(workspace.Owner.Uid, NativeTest.OwnerOf(Path.Combine(path, "ran.txt")));
        // A file with two names may be linked from outside the workspace: it is never given away.
        Assert.Equal(shared.Uid, NativeTest.OwnerOf(Path.Combine(path, "notes/old.txt")));
        Assert.Equal(SandboxErrors.HardLink, Assert.Throws<SandboxException>(() => workspace.Read("linked.txt")).Code);
        Assert.Equal(0, NativeTest.OwnerOf(tenantFolder));
        Assert.Equal((UnixFileMode)0b111_001_000, File.GetUnixFileMode(tenantFolder));
        Assert.Equal(workspace.Owner.Gid, NativeTest.GroupOf(tenantFolder));
    }

    // Runs a shell line on the host (not in a sandbox) as another unprivileged user, the way a local process would.
    private static async Task<(int ExitCode, string Output)> AsHostUserAsync(SandboxUser user, string line)
    {
        var start = new ProcessStartInfo("/usr/bin/setpriv")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[] { "--reuid", $"{user.Uid}", "--regid", $"{user.Gid}", "--clear-groups", "--", "/bin/sh", "-c", line })
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await output + await errors);
    }
}
