using HarnessServer.Sandbox;
using HarnessServer.Sessions;

namespace HarnessServer.Tests.Agents;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class WorkspaceCheckpointTests : IDisposable
{
    private const string Tenant = "acme";
    private static readonly SandboxUser User = TenantSandboxUsers.UserAt(300_000, 1);
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"harness-checkpoints-{Guid.NewGuid():N}");
    private readonly WorkspaceRoot _root;
    private readonly WorkspaceCheckpoints _checkpoints;
    private readonly string _session = Guid.CreateVersion7().ToString();

    public WorkspaceCheckpointTests()
    {
        var options = new SandboxOptions();
        _root = new WorkspaceRoot(_folder, options);
        _checkpoints = new WorkspaceCheckpoints(_root);
        _root.Create(Tenant, _session, User).Dispose();
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string Capture()
    {
        using var workspace = _root.Open(Tenant, _session, User);
        return _checkpoints.Capture(Tenant, workspace).Hash;
    }

    private string WorkspacePath(string relative = "") => Path.Combine(_folder, Tenant, _session, relative);

    [Fact]
    public void Restore_brings_back_changed_and_deleted_files_and_removes_new_ones()
    {
        using (var workspace = _root.Open(Tenant, _session, User))
        {
            workspace.Write("src/a.txt", "one");
            workspace.Write("README.md", "readme");
        }

        var checkpoint = Capture();
        using (var workspace = _root.Open(Tenant, _session, User))
        {
            workspace.Write("src/a.txt", "overwritten");
            workspace.Write("src/new/b.txt", "new");
        }

        File.Delete(WorkspacePath("README.md"));

        _checkpoints.Restore(Tenant, _session, checkpoint, User);

        Assert.Equal("one", File.ReadAllText(WorkspacePath("src/a.txt")));
        Assert.Equal("readme", File.ReadAllText(WorkspacePath("README.md")));
        Assert.False(Directory.Exists(WorkspacePath("src/new")));
        Assert.Empty(Directory.GetDirectories(Path.Combine(_folder, Tenant), ".*"));
    }

    [Fact]
    public void Restore_keeps_the_workspace_owned_by_the_tenants_sandbox_user_and_file_modes()
    {
        using (var workspace = _root.Open(Tenant, _session, User))
        {
            workspace.Write("run.sh", "#!/bin/sh\necho hi\n");
        }

        File.SetUnixFileMode(WorkspacePath("run.sh"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var checkpoint = Capture();
        _checkpoints.Restore(Tenant, _session, checkpoint, User);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(WorkspacePath("run.sh")));
        if (_root.IsRoot)
        {
            Assert.Equal(User.Uid, OwnerOf(WorkspacePath("run.sh")));
            Assert.Equal(User.Uid, OwnerOf(WorkspacePath()));
        }
    }

    [Fact]
    public void Symbolic_links_are_never_followed_and_are_listed_as_skipped()
    {
        var secret = Path.Combine(_folder, "host-secret.txt");
        File.WriteAllText(secret, "host only");
        File.CreateSymbolicLink(WorkspacePath("link.txt"), secret);

        using var workspace = _root.Open(Tenant, _session, User);
        var (_, manifest) = _checkpoints.Capture(Tenant, workspace);

        Assert.Empty(manifest.Entries);
        Assert.Equal("link.txt", Assert.Single(manifest.Skipped).Path);
    }

    [Fact]
    public void A_thousand_checkpoints_of_a_200_file_workspace_with_one_change_each_stay_small()
    {
        using (var workspace = _root.Open(Tenant, _session, User))
        {
            for (var i = 0; i < 200; i++)
            {
                workspace.Write($"dir{i % 10}/file{i}.txt", new string((char)('a' + i % 26), 1000));
            }
        }

        var first = Capture();
        var initial = _checkpoints.StoredBytes(Tenant);
        var hashes = new List<string> { first };
        for (var i = 0; i < 1000; i++)
        {
            using (var workspace = _root.Open(Tenant, _session, User))
            {
                workspace.Write($"dir{i % 10}/file{i % 200}.txt", $"version {i}");
            }

            hashes.Add(Capture());
        }

        var growth = _checkpoints.StoredBytes(Tenant) - initial;
        // Full copies would take 1000 x 200 KB; each checkpoint here costs its changed file and two small trees.
        Assert.True(growth < 5 * 1024 * 1024, $"1000 checkpoints grew the store by {growth} bytes.");
        Assert.Equal(hashes.Count, hashes.Distinct().Count());

        _checkpoints.Restore(Tenant, _session, first, User);
        Assert.Equal(new string('a', 1000), File.ReadAllText(WorkspacePath("dir0/file0.txt")));
        Assert.Equal(200, Directory.GetFiles(WorkspacePath(), "*", SearchOption.AllDirectories).Length);
    }

    [Fact]
    public void Identical_workspaces_share_one_checkpoint()
    {
        using (var workspace = _root.Open(Tenant, _session, User))
        {
            workspace.Write("a.txt", "same");
        }

        Assert.Equal(Capture(), Capture());
    }

    private static int OwnerOf(string path)
    {
        using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(
            Libc.Openat2(Libc.AT_FDCWD, path, Libc.O_RDONLY | Libc.O_CLOEXEC, 0, 0), ownsHandle: true);
        Assert.Equal(0, Libc.Stat(handle, out var stat));
        return (int)stat.Uid;
    }
}
