using HarnessServer.Sandbox;
using HarnessServer.Sessions;
using HarnessServer.Tests.Sandbox;

namespace HarnessServer.Tests.Agents;

/// <summary>
/// Checkpoints that read only the folders the kernel reported changed: each change below is one a capture that
/// trusted the notification blindly would miss; every capture must name exactly the checkpoint a capture by a fresh
/// process (which reads everything) names, and restores must be exact.
/// </summary>
[Collection(SandboxCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class WorkspaceChangeTrackingTests : IDisposable
{
    private const string Tenant = "acme";
    private readonly SandboxFixture _fixture;
    private readonly WorkspaceCheckpoints _checkpoints;
    private Workspace _workspace;

    public WorkspaceChangeTrackingTests(SandboxFixture fixture)
    {
        _fixture = fixture;
        _checkpoints = new WorkspaceCheckpoints(fixture.Root);
        // Files written by the test are settled after 50 ms (the default 2 s would make every test wait).
        _checkpoints.Index.RacyWindow = TimeSpan.FromMilliseconds(50);
        _workspace = fixture.NewWorkspace(Tenant);
    }

    public void Dispose()
    {
        _checkpoints.Dispose();
        _workspace.Dispose();
    }

    private string PathOf(string relative) => Path.Combine(_workspace.FullPath, relative);

    private CapturedCheckpoint Capture() => _checkpoints.Capture(Tenant, _workspace);

    private string ColdHash()
    {
        using var fresh = new WorkspaceCheckpoints(_fixture.Root);
        return fresh.Capture(Tenant, _workspace).Hash;
    }

    // A settled workspace, captured once whole and once incrementally.
    private CapturedCheckpoint Settle()
    {
        Thread.Sleep(80);
        var full = Capture();
        Assert.True(full.FullWalk);
        var warm = Capture();
        Assert.False(warm.FullWalk);
        Assert.Equal(full.Hash, warm.Hash);
        return warm;
    }

    private void AssertExact(CapturedCheckpoint captured) => Assert.Equal(ColdHash(), captured.Hash);

    [Fact]
    public void A_change_in_a_large_workspace_lists_only_its_own_folder()
    {
        for (var i = 0; i < 2000; i++)
        {
            _workspace.Write($"d{i % 20}/sub{i % 3}/f{i}.txt", $"content {i}");
        }

        var settled = Settle();
        Assert.Equal(0, settled.FoldersRead);
        Assert.Equal(0, settled.FilesRead);
        Assert.Equal(2000, settled.Files);

        File.AppendAllText(PathOf("d7/sub1/f7.txt"), " and more");
        var changed = Capture();
        Assert.False(changed.FullWalk);
        Assert.Equal(1, changed.FoldersRead);
        Assert.Equal(1, changed.FilesRead);
        Assert.NotEqual(settled.Hash, changed.Hash);
        AssertExact(changed);

        Restore(settled.Hash);
        Assert.Equal("content 7", File.ReadAllText(PathOf("d7/sub1/f7.txt")));
        Assert.Equal(settled.Hash, ColdHash());
    }

    [Fact]
    public void A_write_through_a_hard_link_in_another_folder_is_seen_by_the_other_name()
    {
        _workspace.Write("a/x.txt", "one");
        _workspace.Write("b/other.txt", "other");
        var settled = Settle();

        // The second name appears after the index recorded a single-linked file; writes through it are reported to
        // folder b only.
        Assert.Equal(0, Link(PathOf("a/x.txt"), PathOf("b/y.txt")));
        var linked = Capture();
        AssertExact(linked);
        Thread.Sleep(80);
        Assert.Equal(linked.Hash, Capture().Hash);

        File.WriteAllText(PathOf("b/y.txt"), "two");
        var written = Capture();
        Assert.NotEqual(linked.Hash, written.Hash);
        AssertExact(written);
        var manifest = _checkpoints.Load(Tenant, written.Hash);
        var x = manifest.Entries.Single(e => e.Path == "a/x.txt");
        Assert.Equal(manifest.Entries.Single(e => e.Path == "b/y.txt").Hash, x.Hash);
        Assert.Equal(3, x.Size);
        Assert.NotEqual(_checkpoints.Load(Tenant, settled.Hash).Entries.Single(e => e.Path == "a/x.txt").Hash, x.Hash);
    }

    [Fact]
    public void A_folder_of_a_thousand_files_moved_elsewhere_is_captured_at_its_new_path()
    {
        for (var i = 0; i < 1000; i++)
        {
            _workspace.Write($"src/pkg/f{i}.txt", $"file {i}");
        }

        _workspace.Write("lib/keep.txt", "keep");
        var settled = Settle();
        var before = Picture();

        Directory.Move(PathOf("src/pkg"), PathOf("lib/pkg"));
        var moved = Capture();
        Assert.False(moved.FullWalk);
        AssertExact(moved);
        var manifest = _checkpoints.Load(Tenant, moved.Hash);
        Assert.Equal(1000, manifest.Entries.Count(e => e.Path.StartsWith("lib/pkg/", StringComparison.Ordinal)));
        Assert.DoesNotContain(manifest.Entries, e => e.Path.StartsWith("src/pkg", StringComparison.Ordinal));

        // A change inside the moved folder is reported under its new path.
        Thread.Sleep(80);
        File.WriteAllText(PathOf("lib/pkg/f5.txt"), "changed after the move");
        var after = Capture();
        AssertExact(after);

        Restore(settled.Hash);
        Assert.Equal(before, Picture());
    }

    [Theory]
    [InlineData("chmod of a file")]
    [InlineData("chmod of a folder")]
    [InlineData("folder replaced by a new one with other files")]
    [InlineData("new nested folders with files")]
    public void Changes_made_outside_any_sandbox_between_calls_are_seen(string change)
    {
        _workspace.Write("top.txt", "top");
        _workspace.Write("dir/a.txt", "aaaa");
        _workspace.Write("dir/inner/b.txt", "bbbb");
        var settled = Settle();
        var before = Picture();
        switch (change)
        {
            case "chmod of a file":
                File.SetUnixFileMode(PathOf("dir/inner/b.txt"), File.GetUnixFileMode(PathOf("dir/inner/b.txt")) | UnixFileMode.UserExecute);
                break;
            case "chmod of a folder":
                File.SetUnixFileMode(PathOf("dir/inner"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                break;
            case "folder replaced by a new one with other files":
                Directory.Delete(PathOf("dir/inner"), recursive: true);
                Directory.CreateDirectory(PathOf("dir/inner"));
                File.WriteAllText(PathOf("dir/inner/b.txt"), "BBBB");
                File.WriteAllText(PathOf("dir/inner/c.txt"), "cccc");
                break;
            case "new nested folders with files":
                Directory.CreateDirectory(PathOf("dir/n1/n2/n3"));
                File.WriteAllText(PathOf("dir/n1/n2/n3/deep.txt"), "deep");
                break;
        }

        var changed = Capture();
        Assert.False(changed.FullWalk);
        Assert.NotEqual(settled.Hash, changed.Hash);
        AssertExact(changed);
        Restore(settled.Hash);
        Assert.Equal(before, Picture());
    }

    [Fact]
    public async Task Changes_made_inside_the_sandbox_are_seen()
    {
        _workspace.Write("dir/a.txt", "aaaa");
        var settled = Settle();

        var result = await _fixture.ShellAsync(_workspace,
            "printf AAAA > dir/a.txt && mkdir -p new/deeper && echo x > new/deeper/x && chmod 700 dir && ln dir/a.txt new/a-link");
        Assert.True(result.Succeeded, result.Stderr);
        var changed = Capture();
        Assert.NotEqual(settled.Hash, changed.Hash);
        AssertExact(changed);

        // A write through the link made inside: the other name's folder is read at every capture.
        Thread.Sleep(80);
        Assert.True((await _fixture.ShellAsync(_workspace, "printf BBBB > new/a-link")).Succeeded);
        var written = Capture();
        Assert.NotEqual(changed.Hash, written.Hash);
        AssertExact(written);
    }

    [Fact]
    public void An_overflowed_kernel_queue_makes_the_next_capture_read_everything()
    {
        _workspace.Write("noise/one", "1");
        _workspace.Write("noise/two", "2");
        _workspace.Write("quiet/file.txt", "before");
        Settle();

        // More events than the kernel queues (fs.inotify.max_queued_events, 16384 by default): alternating names are
        // never merged into one event. The change after them is not in the queue.
        var queued = int.Parse(File.ReadAllText("/proc/sys/fs/inotify/max_queued_events").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        for (var i = 0; i <= queued / 2 + 16; i++)
        {
            File.SetUnixFileMode(PathOf("noise/one"), i % 2 == 0 ? (UnixFileMode)0b110_100_100 : (UnixFileMode)0b110_000_000);
            File.SetUnixFileMode(PathOf("noise/two"), i % 2 == 0 ? (UnixFileMode)0b110_100_100 : (UnixFileMode)0b110_000_000);
        }

        File.WriteAllText(PathOf("quiet/file.txt"), "after!");
        var captured = Capture();
        Assert.True(captured.FullWalk);
        AssertExact(captured);
        Assert.Equal(6, _checkpoints.Load(Tenant, captured.Hash).Entries.Single(e => e.Path == "quiet/file.txt").Size);
        Assert.False(Capture().FullWalk);
    }

    [Fact]
    public void More_changed_folders_than_tracked_make_the_capture_read_everything()
    {
        _checkpoints.Index.MaxDirtyFolders = 2;
        for (var i = 0; i < 4; i++)
        {
            _workspace.Write($"f{i}/a.txt", "a");
        }

        Settle();
        File.WriteAllText(PathOf("f0/a.txt"), "b");
        Assert.False(Capture().FullWalk);
        for (var i = 0; i < 4; i++)
        {
            File.WriteAllText(PathOf($"f{i}/a.txt"), "c");
        }

        var captured = Capture();
        Assert.True(captured.FullWalk);
        AssertExact(captured);
    }

    // The restore swaps the workspace's folder: the open one is the retired folder after it.
    private void Restore(string hash)
    {
        var session = Path.GetFileName(_workspace.FullPath);
        _checkpoints.Restore(Tenant, session, hash, _workspace.Owner);
        _workspace.Dispose();
        _workspace = _fixture.Root.Open(Tenant, session, SandboxFixture.UserOf(Tenant));
    }

    // Every path under the workspace with its kind, permission bits and content.
    private string Picture()
    {
        var lines = new List<string>();
        foreach (var path in Directory.EnumerateFileSystemEntries(_workspace.FullPath, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
        {
            var relative = Path.GetRelativePath(_workspace.FullPath, path);
            var mode = File.GetUnixFileMode(path);
            lines.Add(Directory.Exists(path) ? $"{relative} dir {mode}"
                : $"{relative} file {mode} {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path)))}");
        }

        lines.Sort(StringComparer.Ordinal);
        return string.Join('\n', lines);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "link", SetLastError = true)]
    private static extern int Link(string existing, string created);
}
