using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipes;
using System.Text;
using System.Text.RegularExpressions;
using HarnessServer.Tools;
using Microsoft.Extensions.Options;

namespace HarnessServer.Sandbox;

/// <summary>
/// Builds and runs one bubblewrap sandbox per call (see <see cref="BubblewrapSandbox"/> for what it is made of).
/// </summary>
/// <remarks>
/// One command per call in a fresh bubblewrap sandbox: every namespace unshared (no network but its own
/// loopback), nested user namespaces disabled, a read-only root of <c>/usr</c> and a few <c>/etc</c> files, the
/// session workspace as the only writable host folder, a private size-capped <c>/tmp</c>, a scrubbed environment,
/// and an unprivileged host user. Resource limits are set inside the sandbox by <c>prlimit</c> just before the
/// command: there <c>RLIMIT_NPROC</c> counts the sandbox's own user namespace, so concurrent calls do not share one
/// process budget.
/// </remarks>
internal sealed partial class BubblewrapLauncher(IOptions<SandboxOptions> options, ControlGroups groups, ILogger<BubblewrapLauncher> logger)
{
    private static readonly Encoding Utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);

    // Debian's merged /usr: these are links into /usr on the host, and must be the same inside.
    private static readonly string[] TopLevelLinks = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

    // The dynamic linker's cache, the targets of /usr/bin/* alternatives links, the time zone: nothing that names
    // host users, hosts or secrets.
    private static readonly string[] EtcFiles = ["/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime"];

    /// <summary>HOME inside the sandbox: an empty folder on the read-only root, so no program finds agent-written dotfiles.</summary>
    public const string Home = "/empty";

    // Programs that read configuration the agent could write, and run programs from it, are told to read none: git's
    // system and global files are off, and command-line-level settings (which beat the repository's .git/config)
    // turn off hooks, fsmonitor, pagers, editors, ssh and credential helpers and signing. See docs/sandbox.md.
    private static readonly (string Name, string Value)[] ProgramEnvironment = BuildProgramEnvironment(
        [
            ("core.hooksPath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("core.pager", "cat"),
            ("core.editor", "false"),
            ("sequence.editor", "false"),
            ("core.sshCommand", "false"),
            ("core.askPass", ""),
            ("credential.helper", ""),
            ("gpg.program", "false"),
            ("commit.gpgSign", "false"),
            ("tag.gpgSign", "false"),
            ("protocol.ext.allow", "never"),
        ]);

    private readonly SandboxOptions _options = options.Value;

    private static (string, string)[] BuildProgramEnvironment((string Key, string Value)[] gitSettings)
    {
        List<(string, string)> environment =
        [
            ("XDG_CONFIG_HOME", Home), ("GIT_CONFIG_NOSYSTEM", "1"), ("GIT_CONFIG_GLOBAL", "/dev/null"), ("GIT_ATTR_NOSYSTEM", "1"),
            ("GIT_TERMINAL_PROMPT", "0"), ("GIT_PAGER", "cat"), ("PAGER", "cat"), ("GIT_CONFIG_COUNT", $"{gitSettings.Length}"),
            ("PIP_CONFIG_FILE", "/dev/null"), ("NPM_CONFIG_USERCONFIG", "/dev/null"), ("NPM_CONFIG_GLOBALCONFIG", "/dev/null"),
            ("PYTHONNOUSERSITE", "1"),
        ];
        for (var i = 0; i < gitSettings.Length; i++)
        {
            environment.Add(($"GIT_CONFIG_KEY_{i}", gitSettings[i].Key));
            environment.Add(($"GIT_CONFIG_VALUE_{i}", gitSettings[i].Value));
        }

        return [.. environment];
    }

    /// <summary>Runs without consulting the probe: only the probe and <see cref="BubblewrapSandbox"/> call this.</summary>
    public async Task<SandboxResult> RunAsync(SandboxCommand command, CancellationToken cancellationToken)
    {
        var timeout = Validate(command);
        var group = groups.Create();
        try
        {
            return await RunAsync(command, timeout, group, cancellationToken);
        }
        finally
        {
            // Off the call's path: the sandbox's last processes are still being reaped when bwrap has exited, and an
            // rmdir before then fails; the call need not wait for that.
            group?.Release();
        }
    }

    private async Task<SandboxResult> RunAsync(SandboxCommand command, int timeout, CallGroup? group, CancellationToken cancellationToken)
    {
        var startInfo = StartInfo(command, timeout, group);
        var clock = Stopwatch.StartNew();
        using var process = new Process { StartInfo = startInfo };
        await ForkThread.StartAsync(process);
        process.StandardInput.Close();
        var stdout = CaptureAsync(process.StandardOutput.BaseStream);
        var stderr = CaptureAsync(process.StandardError.BaseStream);

        var timedOut = false;
        var outOfMemory = false;
        using (var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            limit.CancelAfter(TimeSpan.FromSeconds(timeout));
            var watch = group is null ? Task.CompletedTask : WatchMemoryAsync(group, limit);
            try
            {
                await process.WaitForExitAsync(limit.Token);
            }
            catch (OperationCanceledException)
            {
                // bwrap is the process (setpriv execs it); killing its tree takes the sandbox's PID namespace down,
                // and --die-with-parent covers a child that was between fork and exec.
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync(CancellationToken.None);
                outOfMemory = group?.OutOfMemory == true;
                timedOut = !cancellationToken.IsCancellationRequested && !outOfMemory;
            }

            await limit.CancelAsync();
            await watch;
        }

        var (output, outputCut, outputBytes) = await stdout;
        var (errors, errorsCut, errorBytes) = await stderr;
        clock.Stop();
        cancellationToken.ThrowIfCancellationRequested();

        var exitCode = process.ExitCode;
        var killed = timedOut || exitCode is > 128 and <= 128 + 64;
        if (timedOut)
        {
            logger.LogInformation("Sandboxed command killed at its {Timeout} s time limit.", timeout);
        }

        if (outOfMemory || group?.OutOfMemory == true)
        {
            // The kernel killed a process of the sandbox; say so where the agent reads, as the shell would say "Killed".
            killed = true;
            errors += $"\n[the sandbox reached its memory limit of {_options.GroupMemoryBytes} bytes: the kernel killed a process]";
            logger.LogInformation("Sandboxed command hit its group memory limit of {Bytes} bytes.", _options.GroupMemoryBytes);
        }

        return new SandboxResult(exitCode, output, errors, outputCut || errorsCut, clock.ElapsedMilliseconds, timedOut, killed)
        {
            StdoutOutput = outputBytes,
            StderrOutput = errorBytes,
        };
    }

    private int Validate(SandboxCommand command)
    {
        if (command.User.Uid <= 0 || command.User.Gid <= 0)
        {
            throw Invalid("A sandbox never runs as root: give it a positive user and group id.");
        }

        if (!Path.IsPathFullyQualified(command.WorkspacePath) || !Directory.Exists(command.WorkspacePath))
        {
            throw Invalid($"The workspace '{command.WorkspacePath}' is not an existing absolute folder.");
        }

        if ((command.Command is null) == (command.Argv is null))
        {
            throw Invalid("Give exactly one of a shell command line and an argument vector.");
        }

        if (command.Command is { } line && (line.Length == 0 || line.Contains('\0')))
        {
            throw Invalid("The command line is empty or contains NUL.");
        }

        if (command.Argv is { } argv && (argv.Count == 0 || argv[0].Length == 0 || argv.Any(a => a is null || a.Contains('\0'))))
        {
            throw Invalid("The argument vector is empty, starts with an empty program name, or contains NUL.");
        }

        foreach (var (name, value) in command.Environment ?? new Dictionary<string, string>())
        {
            if (!EnvironmentName().IsMatch(name) || value is null || value.Contains('\0'))
            {
                throw Invalid($"'{name}' is not a valid environment variable (a name of letters, digits and '_', a value without NUL).");
            }
        }

        return command.TimeoutSeconds switch
        {
            null => _options.DefaultTimeoutSeconds,
            <= 0 => throw Invalid("The time limit must be a positive number of seconds."),
            var seconds => Math.Min(seconds.Value, _options.MaxTimeoutSeconds),
        };
    }

    private ProcessStartInfo StartInfo(SandboxCommand command, int timeout, CallGroup? group)
    {
        var serverIsRoot = Libc.Geteuid() == 0;
        var start = new ProcessStartInfo
        {
            FileName = group is null ? (serverIsRoot ? _options.SetprivPath : _options.BwrapPath) : EnterGroupShell,
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        // Nothing of the server's environment (connection strings, keys) reaches even setpriv and bwrap.
        start.Environment.Clear();

        var args = start.ArgumentList;
        if (group is not null)
        {
            // A shell outside the sandbox moves itself into the call's groups, then becomes setpriv (or bwrap), so
            // every process of the sandbox is born inside them.
            Add(args, "-c", EnterGroupScript, "harness-enter-group");
            Add(args, [.. group.Folders]);
            Add(args, "--", serverIsRoot ? _options.SetprivPath : _options.BwrapPath);
        }

        if (serverIsRoot)
        {
            // Root in the sandbox's user namespace would still be host root to the kernel's limits and file owners:
            // become the tenant's unprivileged user first, so bwrap builds its namespaces as that user (and
            // RLIMIT_NPROC counts that tenant's processes only).
            Add(args, "--reuid", $"{command.User.Uid}", "--regid", $"{command.User.Gid}", "--clear-groups", "--", _options.BwrapPath);
        }

        Add(args, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--uid", $"{command.User.Uid}", "--gid", $"{command.User.Gid}", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr");
        foreach (var name in TopLevelLinks)
        {
            var host = new FileInfo($"/{name}");
            if (host.LinkTarget is { } target)
            {
                Add(args, "--symlink", target, $"/{name}");
            }
            else if (Directory.Exists(host.FullName))
            {
                Add(args, "--ro-bind", host.FullName, host.FullName);
            }
        }

        foreach (var file in EtcFiles)
        {
            Add(args, "--ro-bind-try", file, file);
        }

        // HOME is created on the root before it is made read-only.
        Add(args, "--dir", Home);
        Add(args, "--proc", "/proc", "--dev", "/dev");
        // The command runs under SeccompFilter's list; the descriptor is made when the process starts (ForkThread).
        if (SeccompFilter.Filter is not null)
        {
            Add(args, "--seccomp", ForkThread.SeccompDescriptor);
        }

        // bubblewrap's /dev is a tmpfs of its own, writable and uncapped (tmpfs pages are charged to no process): it is
        // made read-only (device nodes still work), and /dev/shm is a size-capped tmpfs of its own, or none.
        if (_options.ShmBytes > 0)
        {
            Add(args, "--size", $"{_options.ShmBytes}", "--perms", "1777", "--tmpfs", "/dev/shm");
        }

        Add(args, "--remount-ro", "/dev",
            "--size", $"{_options.MaxFileBytes}", "--tmpfs", "/tmp",
            "--bind", command.WorkspacePath, Workspace.MountPoint,
            // The root bubblewrap assembled is a tmpfs; once built it is made read-only so /workspace and /tmp are
            // the only writable places.
            "--remount-ro", "/",
            "--chdir", Workspace.MountPoint,
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", Home,
            "--setenv", "LANG", "C.UTF-8", "--setenv", "TMPDIR", "/tmp");
        foreach (var (name, value) in ProgramEnvironment)
        {
            Add(args, "--setenv", name, value);
        }

        foreach (var (name, value) in command.Environment ?? new Dictionary<string, string>())
        {
            Add(args, "--setenv", name, value);
        }

        // CPU time one second past the wall limit: a busy loop dies of SIGXCPU if the wall clock somehow did not act.
        Add(args, "--", _options.PrlimitPath, $"--cpu={timeout + 1}", $"--as={_options.MaxMemoryBytes}",
            $"--nproc={_options.MaxProcesses}", $"--fsize={_options.MaxFileBytes}", "--core=0", "--");
        if (command.Command is { } line)
        {
            Add(args, "/bin/sh", "-c", line);
        }
        else
        {
            foreach (var arg in command.Argv!)
            {
                args.Add(arg);
            }
        }

        return start;
    }

    /// <summary>
    /// Ends the call when the kernel killed one of its processes for the group's memory: cgroup v2's
    /// <c>memory.oom.group</c> kills the whole sandbox by itself, v1 kills only the largest process and lets the
    /// others go on, so a sandbox that ran out of memory is stopped as a whole either way.
    /// </summary>
    private static async Task WatchMemoryAsync(CallGroup group, CancellationTokenSource limit)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        try
        {
            while (await timer.WaitForNextTickAsync(limit.Token))
            {
                if (group.OutOfMemory)
                {
                    await limit.CancelAsync();
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The call ended, or its time ran out: nothing left to watch.
        }
    }

    private const string EnterGroupShell = "/bin/sh";

    // $1.. are the group folders up to "--", then the program and its arguments; exit 125 if a group refuses the PID.
    private const string EnterGroupScript = "while [ \"$1\" != -- ]; do echo $$ > \"$1/cgroup.procs\" || exit 125; shift; done; shift; exec \"$@\"";

    /// <summary>Reads a stream to its end, keeping the first <c>MaxOutputBytes</c> and discarding the rest so the child never blocks.</summary>
    private async Task<(string Text, bool Truncated, OutputText Lossless)> CaptureAsync(Stream stream)
    {
        var limit = _options.MaxOutputBytes;
        using var kept = new MemoryStream();
        var buffer = new byte[64 * 1024];
        long total = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            var room = (int)Math.Max(0, Math.Min(read, limit - kept.Length));
            kept.Write(buffer, 0, room);
            total += read;
        }

        var bytes = kept.GetBuffer().AsSpan(0, (int)kept.Length);
        var text = Utf8.GetString(bytes);
        var marker = $"\n[output truncated at {limit} bytes]";
        return total > limit ? (text + marker, true, OutputText.Of(bytes, marker)) : (text, false, OutputText.Of(bytes));
    }

    private static void Add(ICollection<string> args, params string[] values)
    {
        foreach (var value in values)
        {
            args.Add(value);
        }
    }

    /// <summary>
    /// The one thread every sandbox is forked from. bubblewrap's <c>--die-with-parent</c> is a parent-death signal,
    /// and Linux sends it when the forking <em>thread</em> exits, not the process: started from a thread-pool thread,
    /// a sandbox was SIGKILLed whenever the pool retired that thread (measured: exit 137 mid-run). This thread lives
    /// as long as the server, so the signal fires only when the server dies — which is what it is for.
    /// </summary>
    private static class ForkThread
    {
        /// <summary>Stands in the arguments for the descriptor of the pipe the seccomp program is read from.</summary>
        public const string SeccompDescriptor = "{seccomp-fd}";

        private static readonly BlockingCollection<(Process Process, TaskCompletionSource Started)> Requests = [];

        static ForkThread()
        {
            var thread = new Thread(Run) { IsBackground = true, Name = "sandbox-fork" };
            thread.Start();
        }

        public static Task StartAsync(Process process)
        {
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Requests.Add((process, started));
            return started.Task;
        }

        private static void Run()
        {
            foreach (var (process, started) in Requests.GetConsumingEnumerable())
            {
                try
                {
                    // The pipe's read end is inheritable only while this one process starts: every sandbox starts on
                    // this thread, so no other sandbox can inherit (and drain) it.
                    using var seccomp = SeccompPipe(process.StartInfo.ArgumentList);
                    process.Start();
                    seccomp?.DisposeLocalCopyOfClientHandle();
                    started.SetResult();
                }
                catch (Exception e)
                {
                    started.SetException(e);
                }
            }
        }

        // The program fits a pipe's buffer, so it is written before bwrap reads it; the write end closes with the pipe.
        private static AnonymousPipeServerStream? SeccompPipe(IList<string> arguments)
        {
            var at = arguments.IndexOf(SeccompDescriptor);
            if (at < 0)
            {
                return null;
            }

            var pipe = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.Inheritable);
            arguments[at] = pipe.GetClientHandleAsString();
            pipe.Write(SeccompFilter.Filter);
            pipe.Flush();
            return pipe;
        }
    }

    private static SandboxException Invalid(string detail) => new(SandboxErrors.InvalidArgument, detail);

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]*\\z")]
    private static partial Regex EnvironmentName();
}
