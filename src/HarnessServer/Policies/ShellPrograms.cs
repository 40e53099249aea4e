namespace HarnessServer.Policies;

/// <summary>How <see cref="ShellPrograms"/> reads a program's arguments.</summary>
internal enum ShellProgramKind : byte
{
    /// <summary>Running it at all runs other code: only a rule that names the program admits it.</summary>
    Runner,

    /// <summary>Runs the command in its arguments: decided as itself and as that command.</summary>
    Wrapper,

    /// <summary>A wrapper whose own form also runs other code (xargs adds arguments from its input).</summary>
    RunnerWrapper,

    /// <summary>An interpreter: a script file is ordinary, inline code or standard input is not.</summary>
    Interpreter,

    /// <summary>An ordinary program with options that run other code.</summary>
    Options,

    /// <summary>Read by code: git, sed, awk, find, env (their entries carry the reasons).</summary>
    Special,
}

/// <summary>
/// One entry of the table: the programs it covers, how to read their arguments and why they can run other code.
/// <see cref="Triggers"/> are option spellings that run code (<c>--long</c> matches <c>--long</c> and
/// <c>--long=value</c>, <c>-x</c> matches the letter in any short-option bundle); <see cref="ArgumentOptions"/>
/// take the next word as their value; a wrapper's command starts after <see cref="Positionals"/> plain words.
/// </summary>
internal sealed record ShellProgram(ShellProgramKind Kind, string[] Names, string Reason)
{
    public string[] Triggers { get; init; } = [];

    public string[] ArgumentOptions { get; init; } = [];

    public int Positionals { get; init; }
}

/// <summary>
/// The programs that run other code and the arguments through which they do, in one table a reviewer can read and
/// extend. A simple command that uses one of these forms is matched by an <c>allow</c> rule's <c>command</c> glob only
/// when the glob spells the deciding word out before its first wildcard (<c>sh build.sh</c>, <c>git -c *</c>,
/// <c>make test</c>); a broad <c>git *</c> or <c>*</c> does not admit it. Rules without a <c>command</c> matcher, and
/// <c>ask</c> and <c>deny</c> rules, match as usual. A wrapper's command is decided as well as the wrapper.
/// </summary>
internal static class ShellPrograms
{
    public static readonly ShellProgram[] Table =
    [
        new(ShellProgramKind.Runner, ["sh", "bash", "rbash", "dash", "zsh", "ksh", "mksh", "pdksh", "ash", "yash", "fish", "csh", "tcsh", "pwsh", "powershell", "nu", "elvish", "xonsh", "rc", "es"],
            "a shell runs the script, the -c text or the standard input it is given"),
        new(ShellProgramKind.Runner, ["eval", "source", ".", "builtin", "trap", "alias", "unalias", "hash", "enable", "export", "declare", "typeset", "local", "readonly", "unset", "shopt", "set", "fc", "coproc"],
            "a shell builtin that runs text as code or changes how later commands resolve"),
        new(ShellProgramKind.Runner, ["sudo", "su", "doas", "runuser", "pkexec", "sg", "newgrp", "chroot", "unshare", "nsenter", "bwrap", "firejail", "fakeroot", "proot", "systemd-run", "setpriv", "capsh"],
            "runs a command with other privileges, namespaces or credentials"),
        new(ShellProgramKind.Runner, ["setarch", "linux32", "linux64", "uname26", "taskset", "chrt", "flock", "watch", "script", "unbuffer", "expect", "parallel", "at", "batch", "crontab", "entr", "run-parts", "strace", "ltrace", "valgrind", "catchsegv", "gdb", "lldb", "toybox"],
            "runs a command or script given in its arguments (setarch runs a shell when given none; run-parts runs every script in a folder)"),
        new(ShellProgramKind.Runner, ["make", "gmake", "bmake", "pmake"],
            "runs the recipes of a makefile, which the agent can write"),
        new(ShellProgramKind.Runner, ["less", "more", "most", "pg", "vi", "vim", "nvim", "view", "ex", "ed", "red", "emacs", "nano", "pico", "mc"],
            "a pager or editor runs shell commands ('!', -c, +cmd, --eval) and preprocessors"),
        new(ShellProgramKind.Runner, ["m4", "dc", "tclsh", "wish", "jshell", "ghci", "guile", "sbcl", "clisp", "scheme", "racket", "osascript", "nix-shell", "nix"],
            "an interpreter or macro processor whose input can run commands"),
        new(ShellProgramKind.Wrapper, ["nice"], "runs the command given after its options") { ArgumentOptions = ["-n", "--adjustment"] },
        new(ShellProgramKind.Wrapper, ["nohup", "setsid"], "runs the command given after its options"),
        new(ShellProgramKind.Wrapper, ["timeout"], "runs the command given after its duration") { ArgumentOptions = ["-s", "-k", "--signal", "--kill-after"], Positionals = 1 },
        new(ShellProgramKind.Wrapper, ["stdbuf"], "runs the command given after its options") { ArgumentOptions = ["-i", "-o", "-e", "--input", "--output", "--error"] },
        new(ShellProgramKind.Wrapper, ["time"], "runs the command given after its options") { ArgumentOptions = ["-f", "-o", "--format", "--output"] },
        new(ShellProgramKind.Wrapper, ["exec"], "replaces the shell with the command given after its options") { ArgumentOptions = ["-a"] },
        new(ShellProgramKind.Wrapper, ["command"], "runs the command given, bypassing functions") { },
        new(ShellProgramKind.Wrapper, ["ionice"], "runs the command given after its options") { ArgumentOptions = ["-c", "-n", "-p", "-P", "-u", "--class", "--classdata", "--pid", "--pgid", "--uid"] },
        new(ShellProgramKind.Wrapper, ["prlimit"], "runs the command given after its limits") { ArgumentOptions = ["-p", "--pid", "-o", "--output"] },
        new(ShellProgramKind.Wrapper, ["busybox"], "runs the applet named by its first argument (busybox sh is a shell)"),
        new(ShellProgramKind.RunnerWrapper, ["xargs"], "runs the command given with arguments read from its input, which the policy never sees")
        {
            ArgumentOptions = ["-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file", "--delimiter", "--eof", "--replace", "--max-lines", "--max-args", "--max-procs", "--max-chars", "--process-slot-var"],
        },
        new(ShellProgramKind.Interpreter, ["python", "python2", "python3", "pypy", "pypy3"], "runs inline code (-c) or code from standard input")
        {
            Triggers = ["-c", "-"], ArgumentOptions = ["-W", "-X", "--check-hash-based-pycs"],
        },
        new(ShellProgramKind.Interpreter, ["perl"], "runs inline code (-e, -E, -M with code) or code from standard input") { Triggers = ["-e", "-E", "-M", "-m", "-x", "-"], ArgumentOptions = ["-I"] },
        new(ShellProgramKind.Interpreter, ["ruby", "jruby", "irb"], "runs inline code (-e) or code from standard input") { Triggers = ["-e", "-r", "-"], ArgumentOptions = ["-I", "-C"] },
        new(ShellProgramKind.Interpreter, ["node", "nodejs", "bun", "deno"], "runs inline code (-e, -p, --eval, --print, eval) or code from standard input")
        {
            Triggers = ["-e", "-p", "--eval", "--print", "-r", "--require", "--import", "--loader", "--experimental-loader", "eval", "-"], ArgumentOptions = ["--env-file", "--input-type"],
        },
        new(ShellProgramKind.Interpreter, ["php"], "runs inline code (-r, -B, -R, -E, -F, -a) or code from standard input") { Triggers = ["-r", "-B", "-R", "-E", "-F", "-a", "-d", "-"], ArgumentOptions = ["-c", "-z"] },
        new(ShellProgramKind.Interpreter, ["lua", "lua5.1", "lua5.2", "lua5.3", "lua5.4", "luajit"], "runs inline code (-e, -l) or code from standard input") { Triggers = ["-e", "-l", "-"] },
        new(ShellProgramKind.Interpreter, ["Rscript", "R"], "runs inline code (-e) or code from standard input") { Triggers = ["-e", "--default-packages", "-"] },
        new(ShellProgramKind.Options, ["tar", "bsdtar", "gtar"], "tar runs programs for checkpoints, extracted files, compression and volumes")
        {
            Triggers = ["--checkpoint-action", "--to-command", "--use-compress-program", "--info-script", "--new-volume-script", "--rsh-command", "--rmt-command", "--index-file", "-I", "-F"],
        },
        new(ShellProgramKind.Options, ["zip"], "zip -T/-TT runs the unzip command it is given") { Triggers = ["-T", "--unzip-command", "--test"] },
        new(ShellProgramKind.Options, ["man"], "man runs the pager, browser or preprocessor it is given") { Triggers = ["-P", "--pager", "-H", "--html", "-p", "--preprocessor", "-t", "-T", "--troff-device"] },
        new(ShellProgramKind.Options, ["split", "csplit"], "split --filter pipes each piece into a shell command") { Triggers = ["--filter"] },
        new(ShellProgramKind.Options, ["sort"], "sort --compress-program runs the program it is given") { Triggers = ["--compress-program"] },
        new(ShellProgramKind.Options, ["rsync"], "rsync runs the remote shell and remote rsync it is given") { Triggers = ["-e", "--rsh", "--rsync-path"] },
        new(ShellProgramKind.Options, ["ssh", "scp", "sftp"], "ssh runs ProxyCommand, LocalCommand and the programs its options and config files name") { Triggers = ["-o", "-F", "-S", "-D"] },
        new(ShellProgramKind.Options, ["diff"], "GNU diff runs the program given to --diff-program") { Triggers = ["--diff-program"] },
        new(ShellProgramKind.Options, ["gcc", "g++", "cc", "c++", "clang", "clang++"], "the compiler driver runs the programs -wrapper, -fplugin and -specs name") { Triggers = ["-wrapper", "-fplugin", "--plugin", "-specs", "--specs"] },
        new(ShellProgramKind.Special, ["git"], "git runs the programs of an alias the repository's config defines"),
        new(ShellProgramKind.Special, ["git -c", "git --config-env"], "git configuration set on the command line runs programs (core.fsmonitor, core.pager, alias.*, filter drivers)"),
        new(ShellProgramKind.Special, ["git --exec-path"], "git --exec-path makes git run its subcommands from a folder the agent can write"),
        new(ShellProgramKind.Special, ["git --upload-pack", "git --receive-pack", "git --exec", "git -u", "git clone -c"], "the option names a program git runs (or configuration for the new repository)"),
        new(ShellProgramKind.Special, ["git rebase --exec", "git rebase -x", "git bisect run", "git submodule foreach", "git filter-branch", "git difftool", "git mergetool", "git send-email", "git instaweb", "git grep -O"], "the git command runs a shell command or a configured tool"),
        new(ShellProgramKind.Special, ["git --output"], "git --output writes its output to a file the policy never sees as a path"),
        new(ShellProgramKind.Special, ["git config"], "git config writes configuration that later git commands run (aliases, filter and diff drivers)"),
        new(ShellProgramKind.Special, ["sed"], "a sed script's e command and e/w flags run commands and write files, and -f reads a script the policy never sees"),
        new(ShellProgramKind.Special, ["awk", "gawk", "mawk", "nawk"], "an awk program's system(), pipes and @load run commands, and -f reads a program the policy never sees"),
        new(ShellProgramKind.Special, ["find"], "find -exec, -execdir, -ok, -okdir run commands and -delete, -fprint, -fls write or remove files"),
        new(ShellProgramKind.Special, ["env"], "env runs the command given, and its assignments (LD_PRELOAD, GIT_*, PYTHONSTARTUP) and -S can make any program run other code"),
    ];

    private static readonly Dictionary<string, short> ByName = BuildIndex();

    private static readonly HashSet<string> GitCommands = new(StringComparer.Ordinal)
    {
        "add", "am", "annotate", "apply", "archive", "bisect", "blame", "branch", "bundle", "cat-file", "check-attr",
        "check-ignore", "check-mailmap", "check-ref-format", "checkout", "checkout-index", "cherry", "cherry-pick",
        "clean", "clone", "column", "commit", "commit-graph", "commit-tree", "config", "count-objects", "describe",
        "diff", "diff-files", "diff-index", "diff-tree", "difftool", "fetch", "filter-branch", "fmt-merge-msg",
        "for-each-ref", "format-patch", "fsck", "gc", "get-tar-commit-id", "grep", "hash-object", "help", "index-pack",
        "init", "instaweb", "interpret-trailers", "log", "ls-files", "ls-remote", "ls-tree", "maintenance", "merge",
        "merge-base", "merge-file", "merge-tree", "mergetool", "mktag", "mktree", "mv", "name-rev", "notes", "pack-objects",
        "prune", "pull", "push", "range-diff", "read-tree", "rebase", "reflog", "remote", "repack", "replace", "request-pull",
        "reset", "restore", "rev-list", "rev-parse", "revert", "rm", "send-email", "shortlog", "show", "show-branch",
        "show-ref", "sparse-checkout", "stash", "status", "stripspace", "submodule", "switch", "symbolic-ref", "tag",
        "update-index", "update-ref", "var", "verify-commit", "verify-tag", "version", "whatchanged", "worktree", "write-tree",
    };

    private static readonly HashSet<string> GitConfigReads = new(StringComparer.Ordinal)
    {
        "--get", "--get-all", "--get-regexp", "--get-urlmatch", "--list", "-l", "--get-color", "--get-colorbool",
    };

    // Keys "git config KEY VALUE" may set because no git command runs a program from them.
    private static readonly HashSet<string> GitConfigSafeKeys = new(StringComparer.OrdinalIgnoreCase)
    {
        "user.name", "user.email", "init.defaultBranch", "pull.rebase", "pull.ff", "push.default", "push.autoSetupRemote",
        "core.autocrlf", "core.filemode", "core.ignorecase", "core.quotepath", "core.safecrlf", "color.ui", "merge.ff",
        "rebase.autoStash", "fetch.prune", "advice.detachedHead", "branch.autoSetupMerge", "status.showUntrackedFiles",
    };

    private static readonly HashSet<string> FindActions = new(StringComparer.Ordinal)
    {
        "-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls",
    };

    private static Dictionary<string, short> BuildIndex()
    {
        var index = new Dictionary<string, short>(StringComparer.Ordinal);
        for (short i = 0; i < Table.Length; i++)
        {
            foreach (var name in Table[i].Names)
            {
                index.Add(name, i);
            }
        }

        return index;
    }

    /// <summary>The reason of the entry <paramref name="form"/> (a <see cref="ShellCommand.Form"/>).</summary>
    public static string Reason(short form) => Table[form].Reason;

    /// <summary>The entry's first name, as a reviewer finds it in the table (<c>git -c</c>, <c>sh</c>).</summary>
    public static string Name(short form) => Table[form].Names[0];

    /// <summary>
    /// Finds the word through which <paramref name="command"/> runs other code, if any, and the first word of the
    /// command a wrapper runs (<paramref name="inner"/>, returned true).
    /// </summary>
    public static bool Classify(ReadOnlySpan<char> text, ReadOnlySpan<ShellWord> words, ref ShellCommand command, out int inner)
    {
        inner = -1;
        var args = new Words(text, words.Slice(command.FirstWord, command.WordCount), command.TextStart);
        var program = args[0];
        var name = program[(program.LastIndexOf('/') + 1)..];
        if (!ByName.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(name, out var form))
        {
            return false;
        }

        var entry = Table[form];
        var found = entry.Kind switch
        {
            ShellProgramKind.Runner => Trigger.At(args, 0, args[0].Length),
            ShellProgramKind.Wrapper or ShellProgramKind.RunnerWrapper => Wrapped(args, entry, out inner),
            ShellProgramKind.Interpreter => Interpreted(args, entry),
            ShellProgramKind.Options => OptionTrigger(args, 1, entry.Triggers, name is "tar" or "bsdtar" or "gtar"),
            _ => name switch
            {
                "git" => Git(args, ref form),
                "sed" => Sed(args),
                "find" => Find(args),
                "env" => Env(args, out inner),
                _ => Awk(args),
            },
        };
        if (entry.Kind == ShellProgramKind.RunnerWrapper)
        {
            found = Trigger.At(args, 0, args[0].Length);
        }

        if (found.Word >= 0)
        {
            command.TriggerWord = command.FirstWord + found.Word;
            command.TriggerStart = found.Start;
            command.TriggerEnd = found.End;
            command.Form = form;
        }

        if (inner < 0)
        {
            return false;
        }

        // The wrapped program is named as the shell would look it up; a name that is not plain is decided as the
        // wrapper's own code-running form, which only a rule spelling the whole command out admits.
        if (!ShellCommandLine.IsPlainProgram(args[inner]))
        {
            if (command.TriggerWord < 0)
            {
                command.TriggerWord = command.FirstWord + inner;
                command.TriggerStart = 0;
                command.TriggerEnd = command.TextLength;
                command.Form = form;
            }

            inner = -1;
            return false;
        }

        inner += command.FirstWord;
        return true;
    }

    private static Trigger Wrapped(Words args, ShellProgram entry, out int inner)
    {
        inner = -1;
        var positionals = entry.Positionals;
        var i = 1;
        while (i < args.Count)
        {
            var word = args[i];
            if (word is "--")
            {
                i++;
                break;
            }

            if (word.Length > 1 && word[0] == '-' && !(entry.Names[0] == "busybox"))
            {
                i += Contains(entry.ArgumentOptions, word) ? 2 : 1;
                continue;
            }

            if (positionals > 0)
            {
                positionals--;
                i++;
                continue;
            }

            break;
        }

        if (i < args.Count && positionals == 0)
        {
            inner = i;
        }

        return Trigger.None;
    }

    private static Trigger Interpreted(Words args, ShellProgram entry)
    {
        for (var i = 1; i < args.Count; i++)
        {
            var word = args[i];
            if (word is "-")
            {
                return Trigger.At(args, i, 1);
            }

            if (word is "--version" or "--help" or "-V" or "-h")
            {
                return Trigger.None;
            }

            if (word.StartsWith("--"))
            {
                if (word is "--")
                {
                    return i + 1 < args.Count ? Trigger.None : Trigger.Whole(args);
                }

                if (LongTrigger(entry.Triggers, word) is var length and > 0)
                {
                    return Trigger.At(args, i, length);
                }

                if (Contains(entry.ArgumentOptions, word))
                {
                    i++;
                }

                continue;
            }

            if (word[0] == '-' && word.Length > 1)
            {
                // "-Wdefault::DeprecationWarning", "-Ilib": the rest of the word is the option's value.
                if (AttachedValue(entry.ArgumentOptions, word))
                {
                    continue;
                }

                if (ShortTrigger(entry.Triggers, word) is var end and > 0)
                {
                    return Trigger.At(args, i, end);
                }

                // "python3 -m pytest": the module is the program; its arguments follow.
                if (word is "-m" && entry.Names[0] == "python")
                {
                    return Trigger.None;
                }

                if (Contains(entry.ArgumentOptions, word))
                {
                    i++;
                }

                continue;
            }

            // deno's and bun's subcommand that runs inline code
            return Contains(entry.Triggers, word) ? Trigger.At(args, i, word.Length) : Trigger.None;
        }

        // No script: the program comes from standard input.
        return Trigger.Whole(args);
    }

    private static Trigger OptionTrigger(Words args, int from, string[] triggers, bool tar)
    {
        for (var i = from; i < args.Count; i++)
        {
            var word = args[i];
            if (word is "--")
            {
                break;
            }

            if (word.StartsWith("--") && LongTrigger(triggers, word) is var length and > 0)
            {
                return Trigger.At(args, i, length);
            }

            // gcc's -wrapper and -fplugin are single-dash words, and tar's first word is a bundle without a dash.
            if (word.Length > 1 && word[0] == '-' && word[1] != '-' && LongTrigger(triggers, word) is var single and > 0)
            {
                return Trigger.At(args, i, single);
            }

            var bundle = (word.Length > 1 && word[0] == '-' && word[1] != '-') || (tar && i == 1 && !word.IsEmpty && word[0] != '-');
            if (bundle && ShortTrigger(triggers, word) is var end and > 0)
            {
                return Trigger.At(args, i, end);
            }
        }

        return Trigger.None;
    }

    private static Trigger Git(Words args, ref short form)
    {
        var i = 1;
        while (i < args.Count)
        {
            var word = args[i];
            if (word.StartsWith("-c"))
            {
                form = ByName["git -c"];
                return Trigger.At(args, i, 2);
            }

            if (word.StartsWith("--config-env") || word.StartsWith("--exec-path"))
            {
                form = ByName[word.StartsWith("--config-env") ? "git --config-env" : "git --exec-path"];
                return Trigger.At(args, i, word.StartsWith("--config-env") ? 12 : 11);
            }

            if (word is "-C" or "--git-dir" or "--work-tree" or "--namespace" or "--super-prefix" or "--list-cmds" or "--attr-source")
            {
                i += 2;
                continue;
            }

            if (word.Length > 0 && word[0] == '-')
            {
                i++;
                continue;
            }

            break;
        }

        if (i >= args.Count)
        {
            return Trigger.None;
        }

        var sub = args[i];
        if (!GitCommands.GetAlternateLookup<ReadOnlySpan<char>>().Contains(sub))
        {
            // Not a git command: an alias, which the repository's config can define as "!any shell code".
            return Trigger.At(args, i, sub.Length);
        }

        if (sub is "filter-branch" or "difftool" or "mergetool" or "send-email" or "instaweb")
        {
            form = ByName["git rebase --exec"];
            return Trigger.At(args, i, sub.Length);
        }

        if (sub is "config")
        {
            for (var j = i + 1; j < args.Count; j++)
            {
                if (GitConfigReads.GetAlternateLookup<ReadOnlySpan<char>>().Contains(args[j]))
                {
                    return Trigger.None;
                }
            }

            // "git config name" reads one key, "git config user.email x" sets a key no program is run from; any
            // other value or option may write configuration that runs code.
            var positional = 0;
            var options = false;
            var key = -1;
            for (var j = i + 1; j < args.Count; j++)
            {
                if (args[j] is "--local")
                {
                    continue;
                }

                if (args[j].StartsWith("-"))
                {
                    options = true;
                }
                else if (positional++ == 0)
                {
                    key = j;
                }
            }

            if (!options && (positional == 1
                || (positional == 2 && GitConfigSafeKeys.GetAlternateLookup<ReadOnlySpan<char>>().Contains(args[key]))))
            {
                return Trigger.None;
            }

            form = ByName["git config"];
            return Trigger.At(args, i, sub.Length);
        }

        for (var j = i + 1; j < args.Count; j++)
        {
            var word = args[j];
            var run = sub switch
            {
                "rebase" => word is "-x" || Long(word, "--exec"),
                "bisect" => j == i + 1 && word is "run",
                "submodule" => word is "foreach",
                "grep" => word is "-O" || word.StartsWith("-O") || Long(word, "--open-files-in-pager"),
                _ => false,
            };
            if (run)
            {
                form = ByName["git rebase --exec"];
                return Trigger.At(args, j, word.Length);
            }

            if (Long(word, "--output"))
            {
                form = ByName["git --output"];
                return Trigger.At(args, j, "--output".Length);
            }

            var program = Long(word, "--upload-pack") || Long(word, "--receive-pack") || Long(word, "--exec")
                || (word is "-u" && sub is "clone" or "fetch" or "ls-remote" or "archive")
                || (sub is "clone" && (word is "-c" || Long(word, "--config") || Long(word, "--template")));
            if (program)
            {
                form = ByName["git --upload-pack"];
                return Trigger.At(args, j, word.Length);
            }
        }

        return Trigger.None;
    }

    private static Trigger Sed(Words args)
    {
        var scripts = false;
        var sandboxed = false;
        var firstPositional = -1;
        for (var i = 1; i < args.Count; i++)
        {
            var word = args[i];
            if (word is "--sandbox")
            {
                sandboxed = true;
            }
            else if (word is "-f" || Long(word, "--file") || (word.Length > 1 && word[0] == '-' && word[1] != '-' && word.Contains('f')))
            {
                return Trigger.At(args, i, word.Length);
            }
            else if (word is "-e" || Long(word, "--expression"))
            {
                scripts = true;
                var equals = word.IndexOf('=');
                var script = word is not "-e" && equals > 0 ? word[(equals + 1)..] : i + 1 < args.Count ? args[++i] : [];
                if (!sandboxed && !IsQuietSedScript(script))
                {
                    return Trigger.At(args, i, word.Length);
                }
            }
            else if (word is "-l" or "--line-length")
            {
                i++;
            }
            else if (firstPositional < 0 && (word.IsEmpty || word[0] != '-'))
            {
                firstPositional = i;
            }
        }

        // Without -e the first operand is the script.
        if (!scripts && !sandboxed && firstPositional > 0 && !IsQuietSedScript(args[firstPositional]))
        {
            return Trigger.At(args, firstPositional, args[firstPositional].Length);
        }

        return Trigger.None;
    }

    /// <summary>
    /// Whether a sed script is made only of commands that neither run programs nor write files: addresses, then
    /// <c>s</c> (without the <c>e</c>, <c>w</c> flags), <c>y</c>, <c>p d q Q n N D P g G h H x l = z F</c>, groups,
    /// labels, <c>a i c</c> text and <c>r R</c> reads. Anything it cannot read counts as running code.
    /// </summary>
    private static bool IsQuietSedScript(ReadOnlySpan<char> script)
    {
        var i = 0;
        while (i < script.Length)
        {
            var c = script[i];
            if (c is ' ' or '\t' or ';' or '{' or '}' or '!' or ',' or '$' or '~' or '+' || char.IsAsciiDigit(c))
            {
                i++;
                continue;
            }

            if (c is '/' || (c == '\\' && i + 1 < script.Length))
            {
                var delimiter = c == '/' ? '/' : script[++i];
                if (!SkipDelimited(script, ref i, delimiter))
                {
                    return false;
                }

                while (i < script.Length && script[i] is 'I' or 'M')
                {
                    i++;
                }

                continue;
            }

            i++;
            switch (c)
            {
                case 's':
                    if (i >= script.Length)
                    {
                        return false;
                    }

                    var d = script[i];
                    if (d is '\\' or '\n' || !SkipDelimited(script, ref i, d) || !SkipDelimited(script, ref i, d, open: false))
                    {
                        return false;
                    }

                    while (i < script.Length && script[i] is not (';' or '}' or ' ' or '\t'))
                    {
                        if (script[i] is 'e' or 'w' or 'W')
                        {
                            return false;
                        }

                        i++;
                    }

                    break;
                case 'y':
                    if (i >= script.Length)
                    {
                        return false;
                    }

                    var y = script[i];
                    if (!SkipDelimited(script, ref i, y) || !SkipDelimited(script, ref i, y, open: false))
                    {
                        return false;
                    }

                    break;
                case 'p' or 'd' or 'D' or 'n' or 'N' or 'P' or 'g' or 'G' or 'h' or 'H' or 'x' or 'l' or '=' or 'z' or 'F' or 'q' or 'Q':
                    break;
                case 'a' or 'i' or 'c' or 'r' or 'R' or 'b' or 't' or 'T' or ':':
                    // Text, a file to read or a label: the rest of the script belongs to it.
                    return true;
                default:
                    return false;
            }
        }

        return true;
    }

    // With i on the opening delimiter (or, when !open, just past the previous part), moves i past the closing one.
    private static bool SkipDelimited(ReadOnlySpan<char> script, ref int i, char delimiter, bool open = true)
    {
        if (open)
        {
            i++;
        }

        while (i < script.Length)
        {
            if (script[i] == '\\')
            {
                i += 2;
                continue;
            }

            if (script[i] == delimiter)
            {
                i++;
                return true;
            }

            i++;
        }

        return false;
    }

    private static Trigger Awk(Words args)
    {
        for (var i = 1; i < args.Count; i++)
        {
            var word = args[i];
            if (word is "-F" or "-v" or "--field-separator" or "--assign")
            {
                i++;
                continue;
            }

            if (word is "--")
            {
                continue;
            }

            if (word.Length > 1 && word[0] == '-')
            {
                var runs = Long(word, "--file") || Long(word, "--exec") || Long(word, "--load") || Long(word, "--include")
                    || Long(word, "--source") || word[1] is 'f' or 'E' or 'l' or 'i' or 'e';
                if (runs)
                {
                    return Trigger.At(args, i, word.Length);
                }

                // "-F:" and "-vx=1" carry their value.
                continue;
            }

            return word.Contains("system", StringComparison.Ordinal) || word.Contains('|') || word.Contains('@')
                ? Trigger.At(args, i, word.Length)
                : Trigger.None;
        }

        return Trigger.Whole(args);
    }

    private static Trigger Find(Words args)
    {
        for (var i = 1; i < args.Count; i++)
        {
            if (FindActions.GetAlternateLookup<ReadOnlySpan<char>>().Contains(args[i]))
            {
                return Trigger.At(args, i, args[i].Length);
            }
        }

        return Trigger.None;
    }

    private static Trigger Env(Words args, out int inner)
    {
        inner = -1;
        var i = 1;
        while (i < args.Count)
        {
            var word = args[i];
            if (word is "-S" || Long(word, "--split-string") || (word.Length > 2 && word[0] == '-' && word[1] == 'S'))
            {
                return Trigger.At(args, i, word.Length);
            }

            if (word is "--")
            {
                i++;
                break;
            }

            if (word is "-u" or "-C" || (!word.Contains('=') && (Long(word, "--unset") || Long(word, "--chdir"))))
            {
                i += 2;
                continue;
            }

            if (word.Length > 0 && word[0] == '-')
            {
                i++;
                continue;
            }

            if (word.Contains('='))
            {
                return Trigger.At(args, i, word.IndexOf('=') + 1);
            }

            break;
        }

        if (i < args.Count && args[i].Contains('='))
        {
            return Trigger.At(args, i, args[i].IndexOf('=') + 1);
        }

        if (i < args.Count)
        {
            inner = i;
        }

        return Trigger.None;
    }

    // A wrapper's option that takes the next word: spelled out, or (long options) abbreviated as getopt allows.
    private static bool Contains(string[] options, ReadOnlySpan<char> word)
    {
        foreach (var option in options)
        {
            if (word.SequenceEqual(option) || (option.StartsWith("--", StringComparison.Ordinal) && !word.Contains('=') && Long(word, option)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Whether <paramref name="word"/> is the long option <paramref name="option"/>, with or without <c>=value</c>,
    /// or an abbreviation of it (<c>--to-comm=x</c>): getopt_long and git accept any unambiguous prefix.
    /// </summary>
    private static bool Long(ReadOnlySpan<char> word, string option)
    {
        var equals = word.IndexOf('=');
        var name = equals < 0 ? word : word[..equals];
        return name.Length > 2 && name.StartsWith("--") && option.AsSpan().StartsWith(name, StringComparison.Ordinal);
    }

    private static bool AttachedValue(string[] options, ReadOnlySpan<char> word)
    {
        foreach (var option in options)
        {
            if (option.Length == 2 && word.Length > 2 && word.StartsWith(option, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    // "--name" or "--name=value" (and gcc's single-dash long options): the length of the name that matched.
    private static int LongTrigger(string[] triggers, ReadOnlySpan<char> word)
    {
        foreach (var trigger in triggers)
        {
            if (trigger.StartsWith("--", StringComparison.Ordinal) && Long(word, trigger))
            {
                var equals = word.IndexOf('=');
                return equals < 0 ? word.Length : equals;
            }

            if (trigger.Length > 2 && word.StartsWith(trigger, StringComparison.Ordinal)
                && (word.Length == trigger.Length || word[trigger.Length] == '=' || trigger[1] != '-'))
            {
                return trigger.Length;
            }
        }

        return 0;
    }

    // A short option bundle ("-xvI"): the end of the first trigger letter in it, or 0.
    private static int ShortTrigger(string[] triggers, ReadOnlySpan<char> word)
    {
        for (var k = word[0] == '-' ? 1 : 0; k < word.Length; k++)
        {
            foreach (var trigger in triggers)
            {
                if (trigger.Length == 2 && trigger[0] == '-' && trigger[1] == word[k])
                {
                    return k + 1;
                }
            }
        }

        return 0;
    }

    /// <summary>The word that runs code (index within the command) and where in the command's text it is.</summary>
    private readonly record struct Trigger(int Word, int Start, int End)
    {
        public static Trigger None => new(-1, 0, 0);

        public static Trigger At(Words args, int word, int length) => new(word, args.Offset(word), args.Offset(word) + length);

        public static Trigger Whole(Words args) => new(0, 0, args.TextLength);
    }

    /// <summary>The words of one command as spans, and their offsets within its text.</summary>
    private readonly ref struct Words(ReadOnlySpan<char> text, ReadOnlySpan<ShellWord> words, int textStart)
    {
        private readonly ReadOnlySpan<char> _text = text;
        private readonly ReadOnlySpan<ShellWord> _words = words;

        public int Count => _words.Length;

        public ReadOnlySpan<char> this[int index] => _text.Slice(_words[index].Start, _words[index].Length);

        public int Offset(int index) => _words[index].Start - textStart;

        public int TextLength => _words[^1].Start + _words[^1].Length - textStart;
    }
}
