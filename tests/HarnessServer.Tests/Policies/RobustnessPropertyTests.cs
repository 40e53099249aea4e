using FsCheck.Xunit;
using HarnessServer.Policies;

namespace HarnessServer.Tests.Policies;

/// <summary>Nothing an admin or a model can send makes the parser, the splitter or the matcher throw.</summary>
public sealed class RobustnessPropertyTests
{
    private static readonly string[] YamlPieces =
    [
        "rules:", "default:", " deny", " ask", "\n", "  ", "- ", "tool: ", "effect: ", "args: ", "locked: ", "reason: ",
        "{", "}", "[", "]", ",", ":", "\"", "'", "&a ", "*a", "!!str ", "!!binary ", "? ", "|", ">", "---", "...", "#",
        "fs.*", "**", "***", "[a", "%YAML 1.2", "\t", "<<: *a", "~", "null", "true", "allow", "\\", "\u0000", "\uFEFF",
    ];

    [Property(MaxTest = 2000)]
    public void Parser_never_throws_on_arbitrary_text(string? text)
    {
        var result = PolicyParser.Parse(text ?? "", PolicyLevel.Org, "fuzz.yaml");

        Assert.True(result.IsValid || result.Errors.Count > 0);
    }

    [Property(MaxTest = 2000)]
    public void Parser_never_throws_on_yaml_shaped_text(byte[] pieces)
    {
        var text = string.Concat(pieces.Select(p => YamlPieces[p % YamlPieces.Length]));

        var result = PolicyParser.Parse(text, PolicyLevel.Team, "fuzz.yaml");

        Assert.True(result.IsValid || result.Errors.All(e => e.Line >= 1 && e.Column >= 1));
    }

    [Property(MaxTest = 2000)]
    public void Glob_parsing_and_matching_never_throw(string? pattern, string? text, bool crossesSlash)
    {
        if (PolicyGlob.TryParse(pattern ?? "", out var glob, out _))
        {
            glob.IsMatch(text ?? "", crossesSlash);
        }
    }

    [Property(MaxTest = 2000)]
    public void Deciding_never_throws_on_arbitrary_commands_and_paths(string? command, string? path)
    {
        var resolver = PolicyCompiler.Compile(PolicySet.Empty("t")).For("u", []);

        resolver.Decide("shell.exec", new Dictionary<string, string?> { ["command"] = command, ["path"] = path }, "/ws");
    }
}
