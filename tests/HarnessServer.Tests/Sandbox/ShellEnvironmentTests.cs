using HarnessServer.Policies;
using HarnessServer.Sandbox;
using HarnessServer.Tests.Policies;
using static HarnessServer.Tests.Policies.PolicyTesting;

namespace HarnessServer.Tests.Sandbox;

/// <summary>
/// What a shell line meets in the sandbox: an empty read-only HOME, git without system, global or hook
/// configuration, and globs expanded by the harness in the folder the command runs in.
/// </summary>
[Collection(SandboxCollection.Name)]
public sealed class ShellEnvironmentTests(SandboxFixture fixture) : IDisposable
{
    private readonly Workspace _workspace = fixture.NewWorkspace();

    public void Dispose() => _workspace.Dispose();

    private async Task<SandboxResult> RunDecidedAsync(string line)
    {
        var decided = ShellLine.ExpandGlobs(line, _workspace.Glob);
        var decision = ShellCorpus.Resolver.Decide("shell.exec", Command(decided), Workspace.MountPoint);
        Assert.Equal(PolicyEffect.Allow, decision.Effect);
        return await fixture.ShellAsync(_workspace, ShellLine.Render(decided)!);
    }

    [Fact]
    public async Task Home_is_an_empty_read_only_folder()
    {
        var result = await fixture.ShellAsync(_workspace, "echo $HOME; ls -A $HOME | wc -l; touch $HOME/.gitconfig || echo refused");

        Assert.Equal("/empty\n0\nrefused\n", result.Stdout);
    }

    [Fact]
    public async Task Git_reads_no_system_or_global_configuration_and_runs_no_hooks_or_fsmonitor()
    {
        var result = await fixture.ShellAsync(_workspace,
            "git init -q && git config core.fsmonitor 'touch pwned' && git config core.hooksPath hooks "
            + "&& git config --show-scope --get core.hooksPath && git config --show-scope --get core.fsmonitor "
            + "&& git config --global --list; git status >/dev/null; test -e pwned && echo ran || echo not-run");

        Assert.Contains("command\t/dev/null", result.Stdout);
        Assert.Contains("command\tfalse", result.Stdout);
        Assert.EndsWith("not-run\n", result.Stdout);
    }

    [Fact]
    public async Task Ls_of_a_glob_lists_the_matching_files_the_policy_decided()
    {
        _workspace.Write("a.cs", "");
        _workspace.Write("b.cs", "");
        _workspace.Write("c.txt", "");
        _workspace.Write("src/d.cs", "");
        _workspace.Write(".hidden.cs", "");

        Assert.Equal("ls a.cs b.cs", ShellLine.ExpandGlobs("ls *.cs", _workspace.Glob));
        Assert.Equal("a.cs\nb.cs\n", (await RunDecidedAsync("ls *.cs")).Stdout);
        Assert.Equal("d.cs\n", (await RunDecidedAsync("cd src && ls *.cs")).Stdout);
        Assert.Equal("src/d.cs\n", (await RunDecidedAsync("ls src/*.cs")).Stdout);
        Assert.Equal("/workspace/src/d.cs\n", (await RunDecidedAsync("ls /workspace/src/*.cs")).Stdout);
    }

    [Fact]
    public async Task A_glob_that_matches_nothing_is_passed_literally()
    {
        var result = await RunDecidedAsync("echo *.nothing '*' \"*.cs\"");

        Assert.Equal("*.nothing * *.cs\n", result.Stdout);
    }

    [Fact]
    public void A_glob_after_an_unknown_directory_change_is_passed_literally()
    {
        _workspace.Write("a.cs", "");

        Assert.Equal("cd src || ls *.cs", ShellLine.ExpandGlobs("cd src || ls *.cs", _workspace.Glob));
        Assert.Equal("cd src && ls x || ls *.cs", ShellLine.ExpandGlobs("cd src && ls x || ls *.cs", _workspace.Glob));
        Assert.Equal("cd $X; ls *.cs", ShellLine.ExpandGlobs("cd $X; ls *.cs", _workspace.Glob));
        Assert.Equal("ls a.cs", ShellLine.ExpandGlobs("ls *.cs", _workspace.Glob));
    }

    [Fact]
    public void A_file_named_like_an_option_is_decided_as_the_option_it_becomes()
    {
        _workspace.Write("-exec", "");

        var decided = ShellLine.ExpandGlobs("find . -exe? touch pwned \\;", _workspace.Glob);
        var decision = ShellCorpus.Resolver.Decide("shell.exec", Command(decided), Workspace.MountPoint);

        Assert.Equal("find . -exec touch pwned \\;", decided);
        Assert.Equal(PolicyEffect.Deny, decision.Effect);
        Assert.Equal("-exec", decision.Word);
    }

    [Fact]
    public void Links_are_not_followed_when_expanding()
    {
        _workspace.Write("real/x.cs", "");
        File.CreateSymbolicLink(System.IO.Path.Combine(_workspace.FullPath, "link"), "/usr/bin");
        File.CreateSymbolicLink(System.IO.Path.Combine(_workspace.FullPath, "inside"), System.IO.Path.Combine(_workspace.FullPath, "real"));

        Assert.Equal("ls link/*", ShellLine.ExpandGlobs("ls link/*", _workspace.Glob));
        Assert.Equal("ls inside/*.cs", ShellLine.ExpandGlobs("ls inside/*.cs", _workspace.Glob));
        Assert.Equal("ls inside link real", ShellLine.ExpandGlobs("ls *", _workspace.Glob));
    }
}
