using System.Globalization;

namespace HarnessServer.Policies;

/// <summary>Why a <c>shell.exec</c> command line cannot be split into plain simple commands.</summary>
internal enum ShellUnclassifiable : byte
{
    None = 0,
    Empty,
    EmptyCommand,
    TooLong,
    TooManyCommands,
    TooManyWords,
    Redirection,
    HereDocument,
    CommandSubstitution,
    ProcessSubstitution,
    Variable,
    UnterminatedQuote,
    ExpandingDoubleQuote,
    QuotedCommandName,
    TrailingBackslash,
    SubshellOrFunction,
    Group,
    Background,
    Newline,
    ControlCharacter,
    Comment,
    HistoryOrNegation,
    CaseSyntax,
    TildeExpansion,
    Assignment,
    GlobInCommandName,
    CommandNameCharacters,
    ReservedWord,
}

/// <summary>What joins a simple command to the next one.</summary>
internal enum ShellOperator : byte
{
    End,
    Pipe,
    And,
    Or,
    Sequence,
}

/// <summary>
/// One word of a parsed line: its text with quotes and escapes removed (<see cref="Start"/>, <see cref="Length"/>
/// in the parser's text buffer), where it was written (<see cref="Source"/>), whether an unquoted <c>*</c>,
/// <c>?</c> or <c>[</c> makes it a glob, and whether any part of it was quoted or escaped.
/// </summary>
internal readonly record struct ShellWord(int Start, int Length, Range Source, bool Glob, bool Quoted);

/// <summary>
/// One simple command of a parsed line, or the command a wrapper (<c>timeout 5 make</c>, <c>env git log</c>) runs:
/// its words, their text joined by one space (<see cref="TextStart"/>, <see cref="TextLength"/>), where it was
/// written, the operator after it, and what <see cref="ShellPrograms"/> found: the word that makes it run other
/// code (<see cref="TriggerWord"/>, -1 for none) and the part of the text a rule must spell out literally to name
/// it (<see cref="TriggerStart"/> to <see cref="TriggerEnd"/>).
/// </summary>
internal struct ShellCommand
{
    public int FirstWord;
    public int WordCount;
    public int TextStart;
    public int TextLength;
    public Range Source;
    public ShellOperator Next;

    /// <summary>The command this one is the wrapped part of, or -1 for a simple command of the line.</summary>
    public int Parent;

    public int TriggerWord;
    public int TriggerStart;
    public int TriggerEnd;

    /// <summary>Index of the <see cref="ShellPrograms"/> entry whose reason explains the trigger.</summary>
    public short Form;
}

/// <summary>
/// Parses a <c>shell.exec</c> command line the way <c>sh</c> would split it into words, for the subset the harness
/// can decide exactly: simple commands of words joined by <c>|</c>, <c>&amp;&amp;</c>, <c>||</c> or <c>;</c>.
/// Single quotes are literal; double quotes are literal when they hold no <c>$</c>, backquote or backslash; a
/// backslash outside quotes makes the next character literal. Everything whose meaning depends on the shell's
/// state at run time (variables, substitutions, redirections, subshells, groups, background jobs, comments,
/// history, tilde) makes the line unclassifiable, as do quotes, escapes, globs or <c>=</c> in a command name, a
/// name outside <c>[A-Za-z0-9._+/-]</c> and shell keywords. Unquoted glob characters in arguments are kept and
/// flagged (<see cref="ShellWord.Glob"/>): the pipeline expands them against the workspace before deciding.
/// Allocation-free: the caller gives the buffers.
/// </summary>
internal static class ShellCommandLine
{
    public const int MaxLength = 65_536;
    public const int MaxCommands = 64;
    public const int MaxWords = 4096;

    /// <summary>Room for the simple commands and the commands their wrappers run.</summary>
    public const int CommandCapacity = MaxCommands * 2;

    private static readonly System.Buffers.SearchValues<char> DoubleQuoteStops = System.Buffers.SearchValues.Create("\"$`\\");

    private static readonly HashSet<string> ReservedWords = new(StringComparer.Ordinal)
    {
        "if", "then", "else", "elif", "fi", "case", "esac", "for", "select", "while", "until", "do", "done", "in",
        "function", "coproc", "[[", "]]", "{", "}", "!",
    };

    /// <summary>
    /// Parses <paramref name="line"/> into <paramref name="words"/> and <paramref name="commands"/> (at least
    /// <see cref="CommandCapacity"/>), writing the words' text into <paramref name="text"/> (at least as long as the
    /// line), then classifies each command with <see cref="ShellPrograms.Classify"/>, appending the commands that
    /// wrappers run after the line's own.
    /// </summary>
    public static ShellUnclassifiable Parse(
        ReadOnlySpan<char> line, Span<char> text, Span<ShellWord> words, Span<ShellCommand> commands,
        out int wordCount, out int commandCount)
    {
        wordCount = 0;
        commandCount = 0;
        if (line.Length > MaxLength)
        {
            return ShellUnclassifiable.TooLong;
        }

        var why = ScanCharacters(line);
        if (why != ShellUnclassifiable.None)
        {
            return why;
        }

        if (line.Trim(" \t").IsEmpty)
        {
            return ShellUnclassifiable.Empty;
        }

        var written = 0;
        var i = 0;
        var commandFirstWord = 0;
        var commandTextStart = 0;
        var commandSourceStart = 0;
        while (true)
        {
            while (i < line.Length && line[i] is ' ' or '\t')
            {
                i++;
            }

            if (i == line.Length || line[i] is ';' or '|' or '&')
            {
                if (wordCount == commandFirstWord)
                {
                    return ShellUnclassifiable.EmptyCommand;
                }

                var next = ShellOperator.End;
                var operatorLength = 0;
                if (i < line.Length)
                {
                    why = Operator(line, i, out next, out operatorLength);
                    if (why != ShellUnclassifiable.None)
                    {
                        return why;
                    }
                }

                if (commandCount == MaxCommands)
                {
                    return ShellUnclassifiable.TooManyCommands;
                }

                why = CheckProgram(line, words[commandFirstWord], text);
                if (why != ShellUnclassifiable.None)
                {
                    return why;
                }

                commands[commandCount++] = new ShellCommand
                {
                    FirstWord = commandFirstWord,
                    WordCount = wordCount - commandFirstWord,
                    TextStart = commandTextStart,
                    TextLength = written - commandTextStart,
                    Source = new Range(commandSourceStart, i),
                    Next = next,
                    Parent = -1,
                    TriggerWord = -1,
                };
                if (next == ShellOperator.End)
                {
                    break;
                }

                i += operatorLength;
                commandFirstWord = wordCount;
                commandTextStart = written;
                commandSourceStart = i;
                continue;
            }

            if (wordCount == MaxWords)
            {
                return ShellUnclassifiable.TooManyWords;
            }

            if (wordCount > commandFirstWord)
            {
                text[written++] = ' ';
            }

            why = ReadWord(line, ref i, text, ref written, out var word);
            if (why != ShellUnclassifiable.None)
            {
                return why;
            }

            words[wordCount++] = word;
        }

        for (var c = 0; c < commandCount; c++)
        {
            if (!ShellPrograms.Classify(text, words, ref commands[c], out var inner))
            {
                continue;
            }

            if (commandCount >= commands.Length || commandCount >= CommandCapacity)
            {
                return ShellUnclassifiable.TooManyCommands;
            }

            ref readonly var outer = ref commands[c];
            var firstInner = words[inner];
            commands[commandCount++] = new ShellCommand
            {
                FirstWord = inner,
                WordCount = outer.FirstWord + outer.WordCount - inner,
                TextStart = firstInner.Start,
                TextLength = outer.TextStart + outer.TextLength - firstInner.Start,
                Source = outer.Source,
                Next = outer.Next,
                Parent = c,
                TriggerWord = -1,
            };
        }

        return ShellUnclassifiable.None;
    }

    private static ShellUnclassifiable ScanCharacters(ReadOnlySpan<char> line)
    {
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (c == '\n')
            {
                return ShellUnclassifiable.Newline;
            }

            // A paired surrogate is one character (an emoji in a commit message); a lone one cannot reach the
            // sandbox as the same bytes.
            if (char.IsHighSurrogate(c) && i + 1 < line.Length && char.IsLowSurrogate(line[i + 1]))
            {
                i++;
                continue;
            }

            if (c != '\t' && (char.IsControl(c) || char.GetUnicodeCategory(c) is UnicodeCategory.Format
                    or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator
                    or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned))
            {
                return ShellUnclassifiable.ControlCharacter;
            }
        }

        return ShellUnclassifiable.None;
    }

    private static ShellUnclassifiable Operator(ReadOnlySpan<char> line, int i, out ShellOperator op, out int length)
    {
        var next = i + 1 < line.Length ? line[i + 1] : '\0';
        op = ShellOperator.End;
        length = 1;
        switch (line[i])
        {
            case ';':
                if (next is ';' or '&')
                {
                    return ShellUnclassifiable.CaseSyntax;
                }

                op = ShellOperator.Sequence;
                break;
            case '|':
                if (next == '&')
                {
                    return ShellUnclassifiable.Redirection;
                }

                op = next == '|' ? ShellOperator.Or : ShellOperator.Pipe;
                length = next == '|' ? 2 : 1;
                break;
            default:
                if (next == '>')
                {
                    return ShellUnclassifiable.Redirection;
                }

                if (next != '&')
                {
                    return ShellUnclassifiable.Background;
                }

                op = ShellOperator.And;
                length = 2;
                break;
        }

        // "a;" and "a &&" end in an operator with nothing after it.
        return line[(i + length)..].Trim(" \t").IsEmpty ? ShellUnclassifiable.EmptyCommand : ShellUnclassifiable.None;
    }

    private static ShellUnclassifiable ReadWord(ReadOnlySpan<char> line, ref int i, Span<char> text, ref int written, out ShellWord word)
    {
        word = default;
        var start = written;
        var source = i;
        var glob = false;
        var quoted = false;
        if (line[i] == '#')
        {
            return ShellUnclassifiable.Comment;
        }

        if (line[i] == '~')
        {
            return ShellUnclassifiable.TildeExpansion;
        }

        while (i < line.Length)
        {
            var c = line[i];
            var next = i + 1 < line.Length ? line[i + 1] : '\0';
            switch (c)
            {
                case ' ' or '\t' or ';' or '|' or '&':
                    word = new ShellWord(start, written - start, new Range(source, i), glob, quoted);
                    return ShellUnclassifiable.None;
                case '\'':
                {
                    var close = line[(i + 1)..].IndexOf('\'');
                    if (close < 0)
                    {
                        return ShellUnclassifiable.UnterminatedQuote;
                    }

                    line.Slice(i + 1, close).CopyTo(text[written..]);
                    written += close;
                    i += close + 2;
                    quoted = true;
                    continue;
                }

                case '"':
                {
                    var body = line[(i + 1)..];
                    var close = body.IndexOfAny(DoubleQuoteStops);
                    if (close < 0)
                    {
                        return ShellUnclassifiable.UnterminatedQuote;
                    }

                    if (body[close] != '"')
                    {
                        return ShellUnclassifiable.ExpandingDoubleQuote;
                    }

                    body[..close].CopyTo(text[written..]);
                    written += close;
                    i += close + 2;
                    quoted = true;
                    continue;
                }

                case '\\':
                    if (next == '\0')
                    {
                        return ShellUnclassifiable.TrailingBackslash;
                    }

                    text[written++] = next;
                    i += 2;
                    quoted = true;
                    continue;
                case '$':
                    return next == '(' ? ShellUnclassifiable.CommandSubstitution : ShellUnclassifiable.Variable;
                case '`':
                    return ShellUnclassifiable.CommandSubstitution;
                case '<':
                    return next == '(' ? ShellUnclassifiable.ProcessSubstitution
                        : next == '<' ? ShellUnclassifiable.HereDocument
                        : ShellUnclassifiable.Redirection;
                case '>':
                    return next == '(' ? ShellUnclassifiable.ProcessSubstitution : ShellUnclassifiable.Redirection;
                case '(' or ')':
                    return ShellUnclassifiable.SubshellOrFunction;
                case '{' when next == '}':
                    // "{}" has no comma or "..": no shell expands it (find's placeholder).
                    text[written++] = '{';
                    text[written++] = '}';
                    i += 2;
                    continue;
                case '{' or '}':
                    return ShellUnclassifiable.Group;
                case '!':
                    return ShellUnclassifiable.HistoryOrNegation;
                case '=' or ':' when next == '~':
                    return ShellUnclassifiable.TildeExpansion;
                case '*' or '?' or '[':
                    glob = true;
                    break;
            }

            text[written++] = c;
            i++;
        }

        word = new ShellWord(start, written - start, new Range(source, i), glob, quoted);
        return ShellUnclassifiable.None;
    }

    private static ShellUnclassifiable CheckProgram(ReadOnlySpan<char> line, ShellWord program, ReadOnlySpan<char> text)
    {
        var written = line[program.Source];
        if (program.Quoted)
        {
            return ShellUnclassifiable.QuotedCommandName;
        }

        var word = text.Slice(program.Start, program.Length);
        if (word.Contains('='))
        {
            return ShellUnclassifiable.Assignment;
        }

        if (program.Glob || word.Contains(']'))
        {
            return ShellUnclassifiable.GlobInCommandName;
        }

        if (!IsPlainProgram(word))
        {
            return ShellUnclassifiable.CommandNameCharacters;
        }

        return ReservedWords.GetAlternateLookup<ReadOnlySpan<char>>().Contains(written)
            ? ShellUnclassifiable.ReservedWord
            : ShellUnclassifiable.None;
    }

    /// <summary>A command name of <c>[A-Za-z0-9._+/-]</c>, not starting with <c>-</c>, not ending in <c>/</c>.</summary>
    public static bool IsPlainProgram(ReadOnlySpan<char> word)
    {
        if (word.IsEmpty || word[0] == '-' || word[^1] == '/')
        {
            return false;
        }

        foreach (var c in word)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '+' or '/' or '-'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A human reason for a refusal, preallocated so deciding never formats strings.</summary>
    public static string Describe(ShellUnclassifiable why) => why switch
    {
        ShellUnclassifiable.Empty => "unclassifiable shell command: the command is empty",
        ShellUnclassifiable.EmptyCommand => "unclassifiable shell command: an operator has no command on one side",
        ShellUnclassifiable.TooLong => "unclassifiable shell command: longer than 65,536 characters",
        ShellUnclassifiable.TooManyCommands => "unclassifiable shell command: more than 64 simple commands",
        ShellUnclassifiable.TooManyWords => "unclassifiable shell command: more than 4,096 words",
        ShellUnclassifiable.Redirection => "unclassifiable shell command: contains a redirection",
        ShellUnclassifiable.HereDocument => "unclassifiable shell command: contains a here-document or here-string",
        ShellUnclassifiable.CommandSubstitution => "unclassifiable shell command: contains command substitution",
        ShellUnclassifiable.ProcessSubstitution => "unclassifiable shell command: contains process substitution",
        ShellUnclassifiable.Variable => "unclassifiable shell command: contains a variable or parameter expansion ('$')",
        ShellUnclassifiable.UnterminatedQuote => "unclassifiable shell command: a quote is not closed",
        ShellUnclassifiable.ExpandingDoubleQuote => "unclassifiable shell command: double quotes hold '$', a backquote or a backslash (use single quotes)",
        ShellUnclassifiable.QuotedCommandName => "unclassifiable shell command: the command name contains quotes or escapes",
        ShellUnclassifiable.TrailingBackslash => "unclassifiable shell command: ends with a backslash",
        ShellUnclassifiable.SubshellOrFunction => "unclassifiable shell command: contains a subshell or function definition",
        ShellUnclassifiable.Group => "unclassifiable shell command: contains a command group or brace expansion",
        ShellUnclassifiable.Background => "unclassifiable shell command: runs a background job ('&')",
        ShellUnclassifiable.Newline => "unclassifiable shell command: contains a newline",
        ShellUnclassifiable.ControlCharacter => "unclassifiable shell command: contains a control or invisible character",
        ShellUnclassifiable.Comment => "unclassifiable shell command: contains a comment ('#' starting a word)",
        ShellUnclassifiable.HistoryOrNegation => "unclassifiable shell command: contains an unquoted '!'",
        ShellUnclassifiable.CaseSyntax => "unclassifiable shell command: contains ';;' or ';&'",
        ShellUnclassifiable.TildeExpansion => "unclassifiable shell command: contains tilde expansion",
        ShellUnclassifiable.Assignment => "unclassifiable shell command: starts with a variable assignment",
        ShellUnclassifiable.GlobInCommandName => "unclassifiable shell command: the command name contains a glob",
        ShellUnclassifiable.CommandNameCharacters => "unclassifiable shell command: the command name is not plain ([A-Za-z0-9._+/-])",
        ShellUnclassifiable.ReservedWord => "unclassifiable shell command: uses a shell keyword (if, for, while, ...)",
        _ => "shell command is classifiable",
    };
}
