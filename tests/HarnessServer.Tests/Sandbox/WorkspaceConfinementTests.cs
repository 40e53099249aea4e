using System.Runtime.Versioning;
using HarnessServer.Sandbox;

namespace HarnessServer.Tests.Sandbox;

[Collection(SandboxCollection.Name)]
[SupportedOSPlatform("linux")]
public sealed class WorkspaceConfinementTests(SandboxFixture fixture) : IDisposable
{
    private readonly Workspace _workspace = fixture.NewWorkspace();
    private readonly string _outside = Path.Combine(fixture.Root.FullPath, $"outside-{Guid.NewGuid():N}");

    public void Dispose()
    {
        _workspace.Dispose();
        if (Directory.Exists(_outside))
        {
            Directory.Delete(_outside, recursive: true);
        }
    }

    [Fact]
    public void Writes_reads_lists_and_searches_inside_the_workspace()
    {
        var written = _workspace.Write("src/deep/a.txt", "hello\nsecond line\n");
        _workspace.Write("/workspace/src/b.txt", "nothing here");

        Assert.Equal(new FileWritten("src/deep/a.txt", 18), written);
        Assert.Equal(new FileContent("hello\nsecond line\n", 18), _workspace.Read("./src//deep/../deep/a.txt"));
        Assert.Equal([new DirectoryEntry("b.txt", "file", 12), new DirectoryEntry("deep", "directory", 0)], _workspace.List("src").Entries);
        Assert.Equal([new SearchMatch("src/deep/a.txt", 2, "second line")], _workspace.Search("sec.nd", null).Matches);
        Assert.Equal([new SearchMatch("src/deep/a.txt", 1, "hello")], _workspace.Search("hel", "src/deep/a.txt").Matches);
    }

    [Fact]
    public void Files_written_by_the_server_belong_to_the_tenants_sandbox_user()
    {
        var user = SandboxFixture.UserOf("acme");

        _workspace.Write("dir/f.txt", "x");

        Assert.Equal(user.Uid, OwnerOf(Path.Combine(_workspace.FullPath, "dir")));
        Assert.Equal(user.Uid, OwnerOf(Path.Combine(_workspace.FullPath, "dir/f.txt")));
        Assert.Equal(user.Uid, OwnerOf(_workspace.FullPath));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_workspace.FullPath));
    }

    [Theory]
    [InlineData("../x", SandboxErrors.PathOutsideWorkspace)]
    [InlineData("a/../../x", SandboxErrors.PathOutsideWorkspace)]
    [InlineData("/etc/passwd", SandboxErrors.PathOutsideWorkspace)]
    [InlineData("/workspace/../etc/passwd", SandboxErrors.PathOutsideWorkspace)]
    [InlineData("a\0b", SandboxErrors.InvalidPath)]
    [InlineData("a\\..\\..\\x", SandboxErrors.InvalidPath)]
    public void Refuses_paths_that_leave_the_workspace(string path, string code)
    {
        Assert.Equal(code, Refused(() => _workspace.Read(path)));
        Assert.Equal(code, Refused(() => _workspace.Write(path, "x")));
        Assert.Equal(code, Refused(() => _workspace.List(path)));
        Assert.False(File.Exists(Path.Combine(fixture.Root.FullPath, "x")));
    }

    [Fact]
    public void Symlink_to_etc_is_neither_read_nor_written_through()
    {
        File.CreateSymbolicLink(Path.Combine(_workspace.FullPath, "link"), "/etc");
        File.CreateSymbolicLink(Path.Combine(_workspace.FullPath, "passwd"), "/etc/passwd");

        Assert.Equal(SandboxErrors.SymlinkInPath, Refused(() => _workspace.Read("link/passwd")));
        Assert.Equal(SandboxErrors.SymlinkInPath, Refused(() => _workspace.Read("passwd")));
        Assert.Equal(SandboxErrors.SymlinkInPath, Refused(() => _workspace.Write("link/harness-x", "x")));
        Assert.Equal(SandboxErrors.SymlinkInPath, Refused(() => _workspace.Write("passwd", "x")));
        Assert.Equal(SandboxErrors.SymlinkInPath, Refused(() => _workspace.List("link")));
        Assert.Empty(_workspace.Search("root", null).Matches);
        Assert.False(File.Exists("/etc/harness-x"));
        Assert.Contains(new DirectoryEntry("link", "symlink", 4), _workspace.List("").Entries);
    }

    [Fact]
    public void Relative_symlink_out_of_the_workspace_is_refused()
    {
        Directory.CreateDirectory(_outside);
        File.WriteAllText(Path.Combine(_outside, "secret"), "s3cret");
        File.CreateSymbolicLink(Path.Combine(_workspace.FullPath, "up"), $"../../{Path.GetFileName(_outside)}");

        Assert.Equal(SandboxErrors.SymlinkInPath, Refused(() => _workspace.Read("up/secret")));
        Assert.Equal(SandboxErrors.SymlinkInPath, Refused(() => _workspace.Write("up/secret", "x")));
        Assert.Equal("s3cret", File.ReadAllText(Path.Combine(_outside, "secret")));
    }

    [Fact]
    public void Hard_link_to_a_host_file_is_neither_read_nor_written()
    {
        Directory.CreateDirectory(_outside);
        var secret = Path.Combine(_outside, "secret");
        File.WriteAllText(secret, "s3cret");
        Link(secret, Path.Combine(_workspace.FullPath, "hard"));

        Assert.Equal(SandboxErrors.HardLink, Refused(() => _workspace.Read("hard")));
        Assert.Equal(SandboxErrors.HardLink, Refused(() => _workspace.Write("hard", "overwritten")));
        Assert.Empty(_workspace.Search("s3cret", null).Matches);
        Assert.Equal("s3cret", File.ReadAllText(secret));
    }

    [Fact]
    public void Fifo_and_directories_are_not_read_as_files()
    {
        Assert.Equal(0, Mkfifo(Path.Combine(_workspace.FullPath, "pipe")));
        _workspace.Write("dir/x", "x");

        Assert.Equal(SandboxErrors.NotAFile, Refused(() => _workspace.Read("pipe")));
        Assert.Equal(SandboxErrors.NotAFile, Refused(() => _workspace.Write("pipe", "x")));
        Assert.Equal(SandboxErrors.IsADirectory, Refused(() => _workspace.Read("dir")));
        Assert.Equal(SandboxErrors.IsADirectory, Refused(() => _workspace.Write("dir", "x")));
        Assert.Equal(SandboxErrors.NotADirectory, Refused(() => _workspace.List("dir/x")));
        Assert.Equal(SandboxErrors.NotFound, Refused(() => _workspace.Read("missing")));
        Assert.Equal(SandboxErrors.NotADirectory, Refused(() => _workspace.Write("dir/x/y", "x")));
    }

    [Fact]
    public void Refuses_content_over_the_limits()
    {
        var big = new string('a', fixture.Options.MaxReadBytes + 1);
        File.WriteAllText(Path.Combine(_workspace.FullPath, "big"), big);

        Assert.Equal(SandboxErrors.TooLarge, Refused(() => _workspace.Read("big")));
        Assert.Equal(SandboxErrors.TooLarge, Refused(() => _workspace.Write("huge", new string('a', (int)fixture.Options.MaxFileBytes + 1))));
        Assert.False(File.Exists(Path.Combine(_workspace.FullPath, "huge")));
    }

    [Fact]
    public void Overwrite_replaces_the_file_atomically_and_keeps_its_mode()
    {
        var path = Path.Combine(_workspace.FullPath, "run.sh");
        File.WriteAllText(path, "old");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        _workspace.Write("run.sh", "new");

        Assert.Equal("new", File.ReadAllText(path));
        Assert.True(File.GetUnixFileMode(path).HasFlag(UnixFileMode.UserExecute));
        Assert.DoesNotContain(Directory.GetFiles(_workspace.FullPath), f => f.Contains(".harness-write-"));
    }

    [Fact]
    public async Task Symlink_swap_race_never_reaches_outside()
    {
        Directory.CreateDirectory(_outside);
        File.WriteAllText(Path.Combine(_outside, "target"), "host");
        var racing = Path.Combine(_workspace.FullPath, "racing");
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        // Flip 'racing' between a real folder and a link out of the workspace while the server writes through it.
        var swapper = Task.Run(() =>
        {
            var spare = racing + ".dir";
            var link = racing + ".lnk";
            Directory.CreateDirectory(spare);
            File.CreateSymbolicLink(link, _outside);
            while (!stop.IsCancellationRequested)
            {
                Rename(spare, racing);
                Rename(racing, spare);
                Rename(link, racing);
                Rename(racing, link);
            }
        });

        var attempts = 0;
        while (!swapper.IsCompleted)
        {
            attempts++;
            try
            {
                _workspace.Write("racing/target", "sandbox");
            }
            catch (SandboxException)
            {
            }
        }

        await swapper;
        Assert.True(attempts > 10);
        Assert.Equal("host", File.ReadAllText(Path.Combine(_outside, "target")));
        Assert.Single(Directory.GetFileSystemEntries(_outside));
    }

    [Fact]
    public void Another_tenants_workspace_is_not_reachable_by_path()
    {
        using var other = fixture.NewWorkspace("globex");
        other.Write("secret.txt", "globex data");
        var relative = Path.GetRelativePath(_workspace.FullPath, Path.Combine(other.FullPath, "secret.txt"));

        Assert.Equal(SandboxErrors.PathOutsideWorkspace, Refused(() => _workspace.Read(relative)));
        Assert.Equal(SandboxErrors.PathOutsideWorkspace, Refused(() => _workspace.Read(Path.Combine(other.FullPath, "secret.txt"))));
    }

    internal static string Refused(Action action) => Assert.Throws<SandboxException>(action).Code;

    private static int OwnerOf(string path) => NativeTest.OwnerOf(path);

    private static void Rename(string from, string to) => NativeTest.Rename(from, to);

    private static void Link(string existing, string created) => Assert.Equal(0, NativeTest.Link(existing, created));

    private static int Mkfifo(string path) => NativeTest.Mkfifo(path, 0b110_100_100);
}
