namespace HarnessServer.Policies;

/// <summary>Why a <c>shell.exec</c> command line cannot be split into plain simple commands.</summary>
internal enum ShellUnclassifiable : byte
{
    None = 0,
    Empty,
    EmptyCommand,
    TooLong,
    TooManyCommands,
    Redirection,
    HereDocument,
    CommandSubstitution,
    ProcessSubstitution,
    Variable,
    Quote,
    Escape,
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
    CommandRunner,
    Shell,
    InlineCode,
}

/// <summary>
/// Splits a <c>shell.exec</c> command line into simple commands joined by <c>|</c>, <c>&amp;&amp;</c>,
/// <c>||</c> or <c>;</c>, refusing everything else. Deliberately strict: quotes, backslashes, <c>$</c>, backticks,
/// <c>#</c>, <c>!</c>, redirections, parentheses, braces, background <c>&amp;</c>, newlines and control characters
/// anywhere make the line unclassifiable, as do a command name that is not plain (<c>[A-Za-z0-9._+/-]</c>), an
/// assignment prefix, a shell reserved word, and a program that runs other commands (shells, <c>env</c>,
/// <c>xargs</c>, <c>sudo</c>, <c>eval</c>, <c>find -exec</c>, interpreters given inline code or reading stdin...),
/// because such a program would let a rule written for it run anything.
/// </summary>
internal static class ShellCommandLine
{
    public const int MaxLength = 8192;
    public const int MaxCommands = 64;

    // Programs whose arguments are another command, or builtins that change how later commands resolve.
    private static readonly HashSet<string> Runners = new(StringComparer.Ordinal)
    {
        "env", "xargs", "sudo", "su", "doas", "runuser", "nohup", "timeout", "nice", "ionice", "chroot", "setsid",
        "stdbuf", "strace", "ltrace", "time", "watch", "exec", "eval", "source", ".", "command", "builtin", "trap",
        "parallel", "script", "flock", "unbuffer", "taskset", "chrt", "nsenter", "unshare", "bwrap", "firejail",
        "busybox", "toybox", "fakeroot", "proot", "sg", "newgrp", "systemd-run", "at", "batch", "crontab", "alias",
        "unalias", "hash", "enable", "export", "declare", "typeset", "local", "readonly", "unset", "shopt", "set", "fc",
        "coproc", "expect", "ssh", "catchsegv", "valgrind", "gdb", "entr", "inotifywait",
    };

    private static readonly HashSet<string> Shells = new(StringComparer.Ordinal)
    {
        "sh", "bash", "rbash", "zsh", "dash", "ksh", "mksh", "pdksh", "ash", "yash", "fish", "csh", "tcsh", "pwsh",
        "powershell", "nu", "elvish", "xonsh",
    };

    private static readonly HashSet<string> ReservedWords = new(StringComparer.Ordinal)
    {
        "if", "then", "else", "elif", "fi", "case", "esac", "for", "select", "while", "until", "do", "done", "in",
        "function", "time", "coproc", "[[", "]]",
    };

    /// <summary>
    /// Splits <paramref name="line"/>. On success writes each simple command, words joined by one space, into
    /// <paramref name="normalized"/> (at least as long as the line) and its range into <paramref name="commands"/>
    /// (the normalized range) and <paramref name="originals"/> (the range in the line).
    /// </summary>
    public static ShellUnclassifiable Split(
        ReadOnlySpan<char> line, Span<char> normalized, Span<Range> commands, Span<Range> originals, out int count)
    {
        count = 0;
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
        var position = 0;
        while (true)
        {
            var end = NextOperator(line, position, out var operatorLength);
            if (count == MaxCommands || count >= commands.Length)
            {
                return ShellUnclassifiable.TooManyCommands;
            }

            var start = written;
            why = Normalize(line[position..end], normalized, ref written);
            if (why != ShellUnclassifiable.None)
            {
                return why;
            }

            commands[count] = new Range(start, written);
            originals[count] = new Range(position, end);
            count++;
            if (operatorLength == 0)
            {
                return ShellUnclassifiable.None;
            }

            position = end + operatorLength;
        }
    }

    private static ShellUnclassifiable ScanCharacters(ReadOnlySpan<char> line)
    {
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            var next = i + 1 < line.Length ? line[i + 1] : '\0';
            var why = c switch
            {
                '$' => next == '(' ? ShellUnclassifiable.CommandSubstitution : ShellUnclassifiable.Variable,
                '`' => ShellUnclassifiable.CommandSubstitution,
                '\'' or '"' => ShellUnclassifiable.Quote,
                '\\' => ShellUnclassifiable.Escape,
                '<' => next == '(' ? ShellUnclassifiable.ProcessSubstitution
                    : next == '<' ? ShellUnclassifiable.HereDocument
                    : ShellUnclassifiable.Redirection,
                '>' => next == '(' ? ShellUnclassifiable.ProcessSubstitution : ShellUnclassifiable.Redirection,
                '(' or ')' => ShellUnclassifiable.SubshellOrFunction,
                '{' or '}' => ShellUnclassifiable.Group,
                '\n' => ShellUnclassifiable.Newline,
                '#' => ShellUnclassifiable.Comment,
                '!' => ShellUnclassifiable.HistoryOrNegation,
                '\t' => ShellUnclassifiable.None,
                _ when char.IsControl(c) || char.GetUnicodeCategory(c) is System.Globalization.UnicodeCategory.Format
                    or System.Globalization.UnicodeCategory.LineSeparator
                    or System.Globalization.UnicodeCategory.ParagraphSeparator => ShellUnclassifiable.ControlCharacter,
                _ => ShellUnclassifiable.None,
            };
            if (why != ShellUnclassifiable.None)
            {
                return why;
            }

            if (c == '&')
            {
                if (next == '>')
                {
                    return ShellUnclassifiable.Redirection;
                }

                if (next != '&')
                {
                    return ShellUnclassifiable.Background;
                }

                if (i + 2 < line.Length && line[i + 2] == '&')
                {
                    return ShellUnclassifiable.Background;
                }

                i++;
            }
            else if (c == '|')
            {
                if (next == '&')
                {
                    return ShellUnclassifiable.Redirection;
                }

                if (next == '|')
                {
                    if (i + 2 < line.Length && line[i + 2] is '|' or '&')
                    {
                        return ShellUnclassifiable.EmptyCommand;
                    }

                    i++;
                }
            }
            else if (c == ';' && next is ';' or '&')
            {
                return ShellUnclassifiable.CaseSyntax;
            }
        }

        return ShellUnclassifiable.None;
    }

    // ScanCharacters has already refused every '&' that is not part of '&&'.
    private static int NextOperator(ReadOnlySpan<char> line, int from, out int length)
    {
        for (var i = from; i < line.Length; i++)
        {
            switch (line[i])
            {
                case ';':
                    length = 1;
                    return i;
                case '|':
                    length = i + 1 < line.Length && line[i + 1] == '|' ? 2 : 1;
                    return i;
                case '&':
                    length = 2;
                    return i;
            }
        }

        length = 0;
        return line.Length;
    }

    private static ShellUnclassifiable Normalize(ReadOnlySpan<char> command, Span<char> destination, ref int written)
    {
        var wordIndex = 0;
        var interpreter = Interpreter.None;
        var hasScriptArgument = false;
        while (true)
        {
            command = command.TrimStart(" \t");
            if (command.IsEmpty)
            {
                break;
            }

            var space = command.IndexOfAny(' ', '\t');
            var word = space < 0 ? command : command[..space];
            command = space < 0 ? [] : command[space..];
            var why = wordIndex == 0 ? CheckProgram(word, out interpreter) : CheckArgument(word, interpreter, ref hasScriptArgument);
            if (why != ShellUnclassifiable.None)
            {
                return why;
            }

            if (wordIndex > 0)
            {
                destination[written++] = ' ';
            }

            word.CopyTo(destination[written..]);
            written += word.Length;
            wordIndex++;
        }

        if (wordIndex == 0)
        {
            return ShellUnclassifiable.EmptyCommand;
        }

        if (interpreter != Interpreter.None && !hasScriptArgument)
        {
            return ShellUnclassifiable.InlineCode;
        }

        return ShellUnclassifiable.None;
    }

    private enum Interpreter : byte
    {
        None,
        Python,
        Perl,
        Ruby,
        Node,
        Php,
        Lua,
        R,
        Find,
    }

    private static ShellUnclassifiable CheckProgram(ReadOnlySpan<char> word, out Interpreter interpreter)
    {
        interpreter = Interpreter.None;
        if (word.Contains('='))
        {
            return ShellUnclassifiable.Assignment;
        }

        if (word.IndexOfAny('*', '?', '[') >= 0 || word.Contains(']'))
        {
            return ShellUnclassifiable.GlobInCommandName;
        }

        if (word[0] == '~')
        {
            return ShellUnclassifiable.TildeExpansion;
        }

        foreach (var c in word)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '+' or '/' or '-'))
            {
                return ShellUnclassifiable.CommandNameCharacters;
            }
        }

        if (word[0] == '-')
        {
            return ShellUnclassifiable.CommandNameCharacters;
        }

        var slash = word.LastIndexOf('/');
        var name = slash < 0 ? word : word[(slash + 1)..];
        if (slash < 0 && ReservedWords.GetAlternateLookup<ReadOnlySpan<char>>().Contains(name))
        {
            return ShellUnclassifiable.ReservedWord;
        }

        if (name.IsEmpty || Runners.GetAlternateLookup<ReadOnlySpan<char>>().Contains(name))
        {
            return ShellUnclassifiable.CommandRunner;
        }

        if (Shells.GetAlternateLookup<ReadOnlySpan<char>>().Contains(name))
        {
            return ShellUnclassifiable.Shell;
        }

        interpreter = InterpreterOf(name);
        return ShellUnclassifiable.None;
    }

    private static Interpreter InterpreterOf(ReadOnlySpan<char> name)
    {
        if (name.StartsWith("python") || name.StartsWith("pypy"))
        {
            return Interpreter.Python;
        }

        if (name.StartsWith("perl"))
        {
            return Interpreter.Perl;
        }

        if (name.StartsWith("lua"))
        {
            return Interpreter.Lua;
        }

        return name switch
        {
            "ruby" or "irb" or "jruby" => Interpreter.Ruby,
            "node" or "nodejs" or "bun" or "deno" => Interpreter.Node,
            "php" => Interpreter.Php,
            "Rscript" or "R" => Interpreter.R,
            "find" => Interpreter.Find,
            _ => Interpreter.None,
        };
    }

    private static ShellUnclassifiable CheckArgument(ReadOnlySpan<char> word, Interpreter interpreter, ref bool hasScriptArgument)
    {
        if (word[0] == '~' || word.Contains("=~", StringComparison.Ordinal) || word.Contains(":~", StringComparison.Ordinal))
        {
            return ShellUnclassifiable.TildeExpansion;
        }

        if (interpreter == Interpreter.None)
        {
            return ShellUnclassifiable.None;
        }

        if (interpreter == Interpreter.Find)
        {
            hasScriptArgument = true;
            return word is "-exec" or "-execdir" or "-ok" or "-okdir" ? ShellUnclassifiable.CommandRunner : ShellUnclassifiable.None;
        }

        if (word is "-")
        {
            return ShellUnclassifiable.InlineCode;
        }

        if (word.StartsWith("--"))
        {
            return word.StartsWith("--eval") || word.StartsWith("--print") || word.StartsWith("--command") || word.StartsWith("--execute")
                ? ShellUnclassifiable.InlineCode
                : ShellUnclassifiable.None;
        }

        if (word[0] == '-')
        {
            var flags = word[1..];
            var inline = interpreter switch
            {
                Interpreter.Python => flags.Contains('c'),
                Interpreter.Perl or Interpreter.Ruby => flags.IndexOfAny('e', 'E') >= 0,
                Interpreter.Node => flags.IndexOfAny('e', 'p') >= 0,
                Interpreter.Php => flags.IndexOfAny("rBERFa") >= 0,
                Interpreter.Lua or Interpreter.R => flags.Contains('e'),
                _ => false,
            };
            return inline ? ShellUnclassifiable.InlineCode : ShellUnclassifiable.None;
        }

        // deno's and bun's subcommand that runs inline code
        if (!hasScriptArgument && interpreter == Interpreter.Node && word is "eval")
        {
            return ShellUnclassifiable.InlineCode;
        }

        hasScriptArgument = true;
        return ShellUnclassifiable.None;
    }

    /// <summary>A human reason for a refusal, preallocated so deciding never formats strings.</summary>
    public static string Describe(ShellUnclassifiable why) => why switch
    {
        ShellUnclassifiable.Empty => "unclassifiable shell command: the command is empty",
        ShellUnclassifiable.EmptyCommand => "unclassifiable shell command: an operator has no command on one side",
        ShellUnclassifiable.TooLong => "unclassifiable shell command: longer than 8192 characters",
        ShellUnclassifiable.TooManyCommands => "unclassifiable shell command: more than 64 simple commands",
        ShellUnclassifiable.Redirection => "unclassifiable shell command: contains a redirection",
        ShellUnclassifiable.HereDocument => "unclassifiable shell command: contains a here-document",
        ShellUnclassifiable.CommandSubstitution => "unclassifiable shell command: contains command substitution",
        ShellUnclassifiable.ProcessSubstitution => "unclassifiable shell command: contains process substitution",
        ShellUnclassifiable.Variable => "unclassifiable shell command: contains a variable or parameter expansion ('$')",
        ShellUnclassifiable.Quote => "unclassifiable shell command: contains quotes",
        ShellUnclassifiable.Escape => "unclassifiable shell command: contains a backslash escape",
        ShellUnclassifiable.SubshellOrFunction => "unclassifiable shell command: contains a subshell or function definition",
        ShellUnclassifiable.Group => "unclassifiable shell command: contains a command group or brace expansion",
        ShellUnclassifiable.Background => "unclassifiable shell command: runs a background job ('&')",
        ShellUnclassifiable.Newline => "unclassifiable shell command: contains a newline",
        ShellUnclassifiable.ControlCharacter => "unclassifiable shell command: contains a control or invisible character",
        ShellUnclassifiable.Comment => "unclassifiable shell command: contains '#'",
        ShellUnclassifiable.HistoryOrNegation => "unclassifiable shell command: contains '!'",
        ShellUnclassifiable.CaseSyntax => "unclassifiable shell command: contains ';;' or ';&'",
        ShellUnclassifiable.TildeExpansion => "unclassifiable shell command: contains tilde expansion",
        ShellUnclassifiable.Assignment => "unclassifiable shell command: starts with a variable assignment",
        ShellUnclassifiable.GlobInCommandName => "unclassifiable shell command: the command name contains a glob",
        ShellUnclassifiable.CommandNameCharacters => "unclassifiable shell command: the command name is not plain ([A-Za-z0-9._+/-])",
        ShellUnclassifiable.ReservedWord => "unclassifiable shell command: uses a shell keyword (if, for, while, ...)",
        ShellUnclassifiable.CommandRunner => "unclassifiable shell command: runs another command (env, xargs, sudo, eval, find -exec, ...)",
        ShellUnclassifiable.Shell => "unclassifiable shell command: starts another shell",
        ShellUnclassifiable.InlineCode => "unclassifiable shell command: runs an interpreter on inline code or standard input",
        _ => "shell command is classifiable",
    };
}
