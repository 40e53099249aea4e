using HarnessServer.Policies;

namespace HarnessServer.Tests.Policies;

public sealed class WorkspacePathTests
{
    [Theory]
    [InlineData("src/../secrets/x", "secrets/x")]
    [InlineData("./a//b", "a/b")]
    [InlineData("a/./b/", "a/b")]
    [InlineData(".", "")]
    [InlineData("", "")]
    [InlineData("a/b/../../c", "c")]
    [InlineData("/ws/1/src/a.cs", "src/a.cs")]
    [InlineData("/ws/1", "")]
    [InlineData("/ws//1/./x/../y", "y")]
    public void Normalizes_inside_the_workspace(string path, string expected)
    {
        Assert.Equal(expected, Normalize(path, "/ws/1"));
    }

    [Theory]
    [InlineData("../x")]
    [InlineData("a/../../x")]
    [InlineData("/etc/passwd")]
    [InlineData("/ws/10/x")]
    [InlineData("/ws/1/../2/x")]
    [InlineData("a\\..\\..\\x")]
    [InlineData("a\0b")]
    public void Refuses_paths_that_escape_the_workspace(string path)
    {
        Assert.Null(Normalize(path, "/ws/1"));
    }

    [Fact]
    public void Refuses_absolute_paths_without_a_workspace_root()
    {
        Assert.Null(Normalize("/ws/1/a", ""));
    }

    private static string? Normalize(string path, string root)
    {
        var buffer = new char[path.Length];
        var length = WorkspacePath.Normalize(path, root, buffer);
        return length < 0 ? null : new string(buffer, 0, length);
    }
}
