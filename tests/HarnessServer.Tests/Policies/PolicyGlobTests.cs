using HarnessServer.Policies;

namespace HarnessServer.Tests.Policies;

public sealed class PolicyGlobTests
{
    [Theory]
    [InlineData("fs.read", "fs.read", true)]
    [InlineData("fs.read", "fs.write", false)]
    [InlineData("fs.*", "fs.read", true)]
    [InlineData("fs.*", "fs", false)]
    [InlineData("*", "anything.at.all", true)]
    [InlineData("*", "a/b", false)]
    [InlineData("**", "a/b/c", true)]
    [InlineData("**", "", true)]
    [InlineData("src/**", "src/a/b.cs", true)]
    [InlineData("src/**", "src", false)]
    [InlineData("src/**", "srcx/a", false)]
    [InlineData("src/*", "src/a.cs", true)]
    [InlineData("src/*", "src/a/b.cs", false)]
    [InlineData("src/*.cs", "src/a.cs", true)]
    [InlineData("src/*.cs", "src/a.csx", false)]
    [InlineData("**/*.cs", "a.cs", true)]
    [InlineData("**/*.cs", "a/b/c.cs", true)]
    [InlineData("src/**/test/*.cs", "src/test/a.cs", true)]
    [InlineData("src/**/test/*.cs", "src/x/y/test/a.cs", true)]
    [InlineData("src/**/test/*.cs", "src/x/test/y/a.cs", false)]
    [InlineData("a?c", "abc", true)]
    [InlineData("a?c", "a/c", false)]
    [InlineData("[abc]x", "bx", true)]
    [InlineData("[abc]x", "dx", false)]
    [InlineData("[a-c]x", "cx", true)]
    [InlineData("[!a-c]x", "dx", true)]
    [InlineData("[!a-c]x", "/x", false)]
    [InlineData("[^a-c]x", "ax", false)]
    [InlineData("\\*", "*", true)]
    [InlineData("\\*", "a", false)]
    [InlineData("a*b*c", "aXbYc", true)]
    [InlineData("a*b*c", "aXbY/c", false)]
    [InlineData("*.txt", "FILE.TXT", false)]
    public void Matches_paths_within_segments(string pattern, string text, bool expected)
    {
        Assert.Equal(expected, PolicyGlob.Parse(pattern).IsMatch(text));
    }

    [Theory]
    [InlineData("git *", "git log src/a.txt", true)]
    [InlineData("git *", "git", false)]
    [InlineData("dotnet test*", "dotnet test tests/x.csproj", true)]
    [InlineData("rm -rf *", "rm -rf /", true)]
    [InlineData("a?c", "a/c", true)]
    [InlineData("git * --force", "git push origin/main --force", true)]
    public void Matches_commands_across_slashes_and_spaces(string pattern, string text, bool expected)
    {
        Assert.Equal(expected, PolicyGlob.Parse(pattern).IsMatch(text, crossesSlash: true));
    }

    [Theory]
    [InlineData("", "empty glob")]
    [InlineData("***", "3 '*' in a row")]
    [InlineData("src/***/x", "3 '*' in a row")]
    [InlineData("[abc", "unbalanced '['")]
    [InlineData("abc]", "unbalanced ']'")]
    [InlineData("[]", "empty character class")]
    [InlineData("[!]", "empty character class")]
    [InlineData("[z-a]", "reversed range")]
    [InlineData("[a/b]", "includes '/'")]
    [InlineData("abc\\", "lone '\\'")]
    public void Rejects_invalid_globs_with_a_reason(string pattern, string reason)
    {
        Assert.False(PolicyGlob.TryParse(pattern, out _, out var error));
        Assert.Contains(reason, error);
    }

    [Fact]
    public void Rejects_overlong_globs()
    {
        Assert.False(PolicyGlob.TryParse(new string('a', PolicyGlob.MaxLength + 1), out _, out var error));
        Assert.Contains("limit", error);
    }
}
