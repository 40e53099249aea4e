using System.Runtime.Versioning;
using HarnessServer.Sandbox;
using Microsoft.Extensions.Logging.Abstractions;

namespace HarnessServer.Tests.Sandbox;

/// <summary>
/// The quota's incremental measurement against a real workspace: after every kind of change (new folders, renames,
/// moves, deletions, a folder replaced under the same name) it equals a full recount, and a change in one folder of
/// many reads that folder only.
/// </summary>
[Collection(SandboxCollection.Name)]
[SupportedOSPlatform("linux")]
public sealed class WorkspaceQuotaTrackingTests(SandboxFixture fixture) : IDisposable
{
    private readonly Workspace _workspace = fixture.NewWorkspace();
    private readonly WorkspaceQuota _quota = new(Microsoft.Extensions.Options.Options.Create(fixture.Options), NullLogger<WorkspaceQuota>.Instance);

    public void Dispose()
    {
        _quota.Dispose();
        _workspace.Dispose();
    }

    private string At(string relative) => Path.Combine(_workspace.FullPath, relative);

    private void Write(string relative, int bytes)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(At(relative))!);
        File.WriteAllBytes(At(relative), new byte[bytes]);
    }

    // What a walk of the folder finds, counted independently of the quota.
    private WorkspaceUsage Recount()
    {
        var entries = new DirectoryInfo(_workspace.FullPath).EnumerateFileSystemInfos("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }).ToList();
        return new WorkspaceUsage(entries.OfType<FileInfo>().Sum(f => f.Length), entries.Count, false);
    }

    [Fact]
    public void Measurements_after_each_kind_of_change_equal_a_full_recount()
    {
        Write("a/one.bin", 10);
        Write("a/deep/two.bin", 20);
        Assert.Equal(Recount(), _quota.Measure(_workspace));

        var steps = new (string What, Action Change)[]
        {
            ("new subtree", () => { Write("b/c/d/three.bin", 300); Write("b/c/four.bin", 4000); }),
            ("file grows", () => Write("a/deep/two.bin", 2000)),
            ("folder renamed", () => Directory.Move(At("b"), At("renamed"))),
            ("folder moved into another", () => Directory.Move(At("renamed/c"), At("a/deep/c"))),
            ("file in a moved folder grows", () => Write("a/deep/c/d/three.bin", 30_000)),
            ("folder deleted", () => Directory.Delete(At("a/deep"), recursive: true)),
            ("folder replaced under the same name", () => { Directory.Delete(At("a"), recursive: true); Write("a/other/five.bin", 5); }),
            ("files and folders at the root", () => { Write("six.bin", 6); Directory.CreateDirectory(At("empty")); File.Delete(At("a/other/five.bin")); }),
        };

        foreach (var (what, change) in steps)
        {
            change();
            var measured = _quota.Measure(_workspace);
            Assert.True(Recount() == measured, $"after '{what}': measured {measured}, recounted {Recount()}");
        }
    }

    [Fact]
    public void A_change_in_one_folder_of_many_reads_only_that_folder()
    {
        for (var i = 0; i < 50; i++)
        {
            Write($"f{i}/x/file.bin", 1);
        }

        _quota.Measure(_workspace);
        var read = _quota.FoldersRead;
        Write("f7/x/file.bin", 100);
        var measured = _quota.Measure(_workspace);

        Assert.Equal(Recount(), measured);
        Assert.Equal(1, _quota.FoldersRead - read);
    }
}
