using System.Text;

namespace HarnessServer.Policies;

/// <summary>
/// What the harness does with a <c>shell.exec</c> line around its decision, so that the words that run are the
/// words that were decided: <see cref="ExpandGlobs"/> replaces each unquoted glob word by the workspace paths it
/// matches (quoted) before the decision, and <see cref="Render"/> writes the parsed line back with every word quoted
/// for <c>sh -c</c>, leaving the shell nothing to expand, split or glob.
/// </summary>
internal static class ShellLine
{
    private const string SandboxWorkspace = "/workspace";

    /// <summary>
    /// <paramref name="line"/> with every word quoted and the operators between simple commands kept, or null when
    /// the line is unclassifiable (a decision allowed it only under a rule without a command matcher: it runs as
    /// written).
    /// </summary>
    public static string? Render(string line)
    {
        if (!TryParse(line, out var parsed))
        {
            return null;
        }

        var rendered = new StringBuilder(line.Length + 16);
        foreach (var command in parsed.Commands)
        {
            for (var w = 0; w < command.Words.Count; w++)
            {
                if (w > 0)
                {
                    rendered.Append(' ');
                }

                rendered.Append(Quote(command.Words[w]));
            }

            rendered.Append(command.Next switch
            {
                ShellOperator.Pipe => " | ",
                ShellOperator.And => " && ",
                ShellOperator.Or => " || ",
                ShellOperator.Sequence => " ; ",
                _ => "",
            });
        }

        return rendered.ToString();
    }

    /// <summary>The words of each simple command of <paramref name="line"/> as the policy decides them; null when unclassifiable.</summary>
    public static IReadOnlyList<IReadOnlyList<string>>? Words(string line) =>
        TryParse(line, out var parsed) ? [.. parsed.Commands.Select(c => c.Words)] : null;

    /// <summary>
    /// <paramref name="line"/> with each unquoted glob word replaced by the quoted paths <paramref name="glob"/>
    /// (folder relative to the workspace, pattern) finds for it, in the folder the command will run in: <c>cd DIR</c>
    /// followed by <c>&amp;&amp;</c> or <c>;</c> moves it, any other <c>cd</c> (or an <c>||</c> after a move) makes it
    /// unknown, and then globs are passed literally. A word that matches nothing, that mixes quotes and globs, or
    /// that is absolute outside <c>/workspace</c> stays as written (and is passed literally). The line is returned
    /// unchanged when there is nothing to expand or it is unclassifiable.
    /// </summary>
    public static string ExpandGlobs(string line, Func<string, string, IReadOnlyList<string>?> glob)
    {
        ArgumentNullException.ThrowIfNull(line);
        ArgumentNullException.ThrowIfNull(glob);
        if (line.AsSpan().IndexOfAny('*', '?', '[') < 0 || !TryParse(line, out var parsed))
        {
            return line;
        }

        var replacements = new List<(Range Source, string Text)>();
        string? directory = "";
        var moved = false;
        foreach (var command in parsed.Commands)
        {
            if (directory is not null)
            {
                for (var w = 1; w < command.Words.Count; w++)
                {
                    if (command.Glob[w] && !command.Quoted[w] && Expand(command.Words[w], directory, glob) is { } paths)
                    {
                        replacements.Add((command.Sources[w], string.Join(' ', paths.Select(Quote))));
                    }
                }
            }

            if (command.Words[0] is "cd" or "pushd" or "popd")
            {
                directory = directory is not null && command.Words.Count == 2 && !command.Glob[1]
                        && command.Next is ShellOperator.And or ShellOperator.Sequence
                    ? Move(directory, command.Words[1])
                    : null;
                moved = true;
            }
            else if (moved && command.Next == ShellOperator.Or)
            {
                directory = null;
            }
        }

        if (replacements.Count == 0)
        {
            return line;
        }

        var expanded = new StringBuilder(line.Length * 2);
        var at = 0;
        foreach (var (source, text) in replacements)
        {
            var (start, length) = source.GetOffsetAndLength(line.Length);
            expanded.Append(line, at, start - at).Append(text);
            at = start + length;
        }

        return expanded.Append(line, at, line.Length - at).ToString();
    }

    /// <summary>A word as <c>sh</c> reads it back unchanged: plain when it is made of safe characters, else single-quoted.</summary>
    public static string Quote(string word)
    {
        if (word.Length > 0 && word.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '+' or '/' or ':' or ',' or '=' or '@' or '%' or '-'))
        {
            return word;
        }

        return $"'{word.Replace("'", "'\\''", StringComparison.Ordinal)}'";
    }

    private static IReadOnlyList<string>? Expand(string pattern, string directory, Func<string, string, IReadOnlyList<string>?> glob)
    {
        if (pattern.StartsWith(SandboxWorkspace + "/", StringComparison.Ordinal))
        {
            return glob("", pattern[(SandboxWorkspace.Length + 1)..]) is { } paths ? [.. paths.Select(p => $"{SandboxWorkspace}/{p}")] : null;
        }

        return pattern.StartsWith('/') ? null : glob(directory, pattern);
    }

    private static string? Move(string directory, string target)
    {
        var path = target.StartsWith('/') ? target : directory.Length == 0 ? target : $"{directory}/{target}";
        var buffer = new char[path.Length + SandboxWorkspace.Length + 2];
        var length = WorkspacePath.Normalize(path, SandboxWorkspace, buffer);
        return length < 0 ? null : new string(buffer, 0, length);
    }

    private sealed record SimpleCommand(IReadOnlyList<string> Words, bool[] Glob, bool[] Quoted, Range[] Sources, ShellOperator Next);

    private sealed record Parsed(IReadOnlyList<SimpleCommand> Commands);

    private static bool TryParse(string line, out Parsed parsed)
    {
        parsed = new Parsed([]);
        if (line.Length > ShellCommandLine.MaxLength)
        {
            return false;
        }

        var text = new char[Math.Max(line.Length, 1)];
        var words = new ShellWord[Math.Min(ShellCommandLine.MaxWords, line.Length + 1)];
        var commands = new ShellCommand[ShellCommandLine.CommandCapacity];
        if (ShellCommandLine.Parse(line, text, words, commands, out _, out var count) != ShellUnclassifiable.None)
        {
            return false;
        }

        var list = new List<SimpleCommand>();
        for (var i = 0; i < count && commands[i].Parent < 0; i++)
        {
            var command = commands[i];
            var span = words.AsSpan(command.FirstWord, command.WordCount);
            list.Add(new SimpleCommand(
                [.. span.ToArray().Select(w => new string(text, w.Start, w.Length))],
                [.. span.ToArray().Select(w => w.Glob)],
                [.. span.ToArray().Select(w => w.Quoted)],
                [.. span.ToArray().Select(w => w.Source)],
                command.Next));
        }

        parsed = new Parsed(list);
        return true;
    }
}
