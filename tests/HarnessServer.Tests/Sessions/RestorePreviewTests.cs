using HarnessServer.Sandbox;
using HarnessServer.Sessions;

namespace HarnessServer.Tests.Sessions;

/// <summary>The rollback preview against real workspaces and checkpoints: what it lists is what a restore then does.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class RestorePreviewTests : IDisposable
{
    private const string Tenant = "acme";
    private static readonly SandboxUser User = TenantSandboxUsers.UserAt(300_000, 1);
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"harness-preview-{Guid.NewGuid():N}");
    private readonly WorkspaceRoot _root;
    private readonly WorkspaceCheckpoints _checkpoints;
    private readonly string _session = Guid.CreateVersion7().ToString();

    public RestorePreviewTests()
    {
        _root = new WorkspaceRoot(_folder, new SandboxOptions());
        _checkpoints = new WorkspaceCheckpoints(_root);
        _root.Create(Tenant, _session, User).Dispose();
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private RestorePreview Preview(string checkpoint)
    {
        using var workspace = _root.Open(Tenant, _session, User);
        return RestorePreview.Of(_checkpoints, Tenant, workspace, checkpoint);
    }

    [Fact]
    public void Lists_files_a_restore_removes_brings_back_and_changes_and_nothing_else()
    {
        string checkpoint;
        using (var workspace = _root.Open(Tenant, _session, User))
        {
            workspace.Write("src/kept.txt", "same");
            workspace.Write("src/edited.txt", "before");
            workspace.Write("deleted.md", "gone later");
            checkpoint = _checkpoints.Capture(Tenant, workspace).Hash;
            workspace.Write("src/edited.txt", "after");
            workspace.Write("new/added.txt", "new");
        }

        File.Delete(Path.Combine(_folder, Tenant, _session, "deleted.md"));

        var preview = Preview(checkpoint);

        Assert.Equal(["new/", "new/added.txt"], preview.Removed);
        Assert.Equal(["deleted.md"], preview.Restored);
        Assert.Equal(["src/edited.txt"], preview.Changed);
        Assert.False(preview.ChangesNothing);

        _checkpoints.Restore(Tenant, _session, checkpoint, User);
        Assert.True(Preview(checkpoint).ChangesNothing);
        Assert.Equal("before", File.ReadAllText(Path.Combine(_folder, Tenant, _session, "src", "edited.txt")));
    }

    [Fact]
    public void A_workspace_that_is_the_checkpoint_changes_nothing()
    {
        string checkpoint;
        using (var workspace = _root.Open(Tenant, _session, User))
        {
            workspace.Write("a.txt", "a");
            checkpoint = _checkpoints.Capture(Tenant, workspace).Hash;
        }

        var preview = Preview(checkpoint);
        Assert.True(preview.ChangesNothing);
        Assert.Equal(1, preview.Unchanged);
    }
}
