using System.Text;
using FsCheck.Xunit;
using HarnessServer.Policies;

namespace HarnessServer.Tests.Sandbox;

/// <summary>
/// For random words (quotes, operators, globs, <c>$</c>, backslashes, unicode, tabs) written in random quoting
/// styles and joined by random operators: the parser reads the words they spell, and the line the harness renders
/// from them, run by the real sandbox's <c>sh</c> through <c>printf '%s\0'</c>, executes exactly those words.
/// </summary>
[Collection(SandboxCollection.Name)]
public sealed class ShellRenderingPropertyTests(SandboxFixture fixture)
{
    private static readonly string[] Alphabet =
    [
        "a", "b", "Z", "0", " ", "\t", "'", "\"", "$", "`", "\\", "*", "?", "[", "]", ";", "|", "&", "(", ")", "<", ">", "#",
        "!", "~", "{", "}", "=", "-", "%", ".", "/", "é", "中", "😀",
    ];

    private static readonly string[] Operators = [" ; ", ";", " && ", "&&\t", "\t;  "];

    private static (string Line, List<List<string>> Commands) Decode(byte[] data)
    {
        var commands = new List<List<string>> { new() };
        var word = new StringBuilder();
        var style = 0;
        var wordOpen = false;
        foreach (var b in data)
        {
            var code = b % (Alphabet.Length + 3);
            if (code < Alphabet.Length)
            {
                word.Append(Alphabet[code]);
                wordOpen = true;
            }
            else if (code == Alphabet.Length)
            {
                commands[^1].Add(word.ToString());
                word.Clear();
                wordOpen = false;
            }
            else if (code == Alphabet.Length + 1 && commands.Count < 4)
            {
                if (wordOpen)
                {
                    commands[^1].Add(word.ToString());
                    word.Clear();
                    wordOpen = false;
                }

                commands.Add([]);
            }
            else
            {
                style++;
            }
        }

        if (wordOpen)
        {
            commands[^1].Add(word.ToString());
        }

        foreach (var command in commands.Where(c => c.Count == 0))
        {
            command.Add("x");
        }

        var line = new StringBuilder();
        for (var c = 0; c < commands.Count; c++)
        {
            if (c > 0)
            {
                line.Append(Operators[(style + c) % Operators.Length]);
            }

            line.Append("printf '%s\\0'");
            for (var w = 0; w < commands[c].Count; w++)
            {
                line.Append(' ').Append(Write(commands[c][w], style + w));
            }
        }

        return (line.ToString(), commands);
    }

    // One of the ways an agent writes a word: single quotes, double quotes, backslash escapes, or a mix.
    private static string Write(string word, int style)
    {
        if (style % 4 == 0 && !word.Contains('\''))
        {
            return $"'{word}'";
        }

        if (style % 4 == 1 && word.IndexOfAny(['$', '`', '\\', '"']) < 0)
        {
            return $"\"{word}\"";
        }

        if (style % 4 == 2)
        {
            return $"'{word.Replace("'", "'\\''")}'";
        }

        var written = new StringBuilder();
        foreach (var rune in word.EnumerateRunes())
        {
            var text = rune.ToString();
            written.Append(text.Length == 1 && (char.IsAsciiLetterOrDigit(text[0]) || text[0] is '.' or '/' or '%' or '-' or '=') || text.Length > 1 || text[0] > 127
                ? text
                : text == "'" ? "\"'\"" : $"\\{text}");
        }

        return word.Length == 0 ? "''" : written.ToString();
    }

    [Property(MaxTest = 40)]
    public bool Words_the_sandbox_runs_are_the_words_the_policy_decided(byte[] data)
    {
        var (line, commands) = Decode(data);
        using var workspace = fixture.NewWorkspace();

        var decided = ShellLine.ExpandGlobs(line, workspace.Glob);
        var parsed = ShellLine.Words(decided);
        var expected = commands.Select(c => (IReadOnlyList<string>)["printf", "%s\\0", .. c]).ToList();
        if (parsed is null || !parsed.Select(p => p.ToArray()).SequenceEqual(expected.Select(e => e.ToArray()), new WordsComparer()))
        {
            throw new InvalidOperationException($"'{line}' parsed as {Show(parsed)}, not {Show(expected)}");
        }

        var result = fixture.ShellAsync(workspace, ShellLine.Render(decided)!).GetAwaiter().GetResult();
        var ran = result.Stdout.Split('\0')[..^1];
        var decidedArguments = parsed.SelectMany(p => p.Skip(2)).ToArray();
        if (result.ExitCode != 0 || !ran.SequenceEqual(decidedArguments))
        {
            throw new InvalidOperationException($"'{line}' rendered as '{ShellLine.Render(decided)}' ran {Show([ran])}, decided {Show([decidedArguments])}: {result.Stderr}");
        }

        return true;
    }

    private static string Show(IEnumerable<IEnumerable<string>>? commands) =>
        commands is null ? "unclassifiable" : string.Join(" ; ", commands.Select(c => string.Join(", ", c.Select(w => $"[{w}]"))));

    private sealed class WordsComparer : IEqualityComparer<string[]>
    {
        public bool Equals(string[]? x, string[]? y) => x is not null && y is not null && x.SequenceEqual(y);

        public int GetHashCode(string[] obj) => obj.Length;
    }
}
