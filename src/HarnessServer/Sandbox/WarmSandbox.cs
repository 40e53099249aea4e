using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace HarnessServer.Sandbox;

/// <summary>
/// One session's long-lived bubblewrap sandbox with <c>harness-init</c> (<c>Sandbox/warm/harness-init.c</c>) as its
/// pid 1, talked to over the init's stdin and stdout in frames of a type byte, a little-endian length and the payload.
/// The init runs one command at a time in fresh mount, PID and IPC namespaces (a fresh <c>/tmp</c>, <c>/dev/shm</c>
/// and <c>/proc</c>), so when a call ends everything it started is gone and only the workspace's files remain.
/// </summary>
internal sealed partial class WarmSandbox : IDisposable
{
    private const byte SeccompFrame = (byte)'S', RunFrame = (byte)'R', KillFrame = (byte)'K';
    private const byte StartedFrame = (byte)'A', StdoutFrame = (byte)'O', StderrFrame = (byte)'E', ExitFrame = (byte)'X', FailedFrame = (byte)'F';
    private const int KeptErrorBytes = 4096;

    // How long a killed command's PID namespace may take to be torn down before the whole sandbox is stopped.
    private static readonly TimeSpan KillGrace = TimeSpan.FromSeconds(5);

    private readonly Process _process;
    private readonly Stream _control;
    private readonly Stream _replies;
    private readonly Task<string> _errors;
    private readonly SemaphoreSlim _lease = new(1, 1);
    private readonly (ulong Device, ulong Inode) _workspace;
    private int _stopped;

    private WarmSandbox(Process process, CallGroup? group, string workspacePath, SandboxUser user, (ulong, ulong) workspace)
    {
        _process = process;
        Group = group;
        WorkspacePath = workspacePath;
        User = user;
        _workspace = workspace;
        _control = process.StandardInput.BaseStream;
        _replies = process.StandardOutput.BaseStream;
        _errors = DrainAsync(process.StandardError.BaseStream);
        LastUsed = Environment.TickCount64;
    }

    public string WorkspacePath { get; }
    public SandboxUser User { get; }
    public CallGroup? Group { get; }

    /// <summary>When the last command ended (<see cref="Environment.TickCount64"/>).</summary>
    public long LastUsed { get; private set; }

    /// <summary>Whether it has run a command: a sandbox that never did may have failed to start at all.</summary>
    public bool HasRun { get; private set; }

    public bool IsStopped => Volatile.Read(ref _stopped) == 1 || _process.HasExited;

    /// <summary>
    /// Whether <see cref="WorkspacePath"/> is still the folder that was bound into the sandbox: a workspace removed, or
    /// replaced by another folder of the same name, needs a new sandbox.
    /// </summary>
    public bool StillBindsItsWorkspace() => WorkspaceIdentity(WorkspacePath) == _workspace;

    /// <summary>Wraps a started sandbox process and hands it the seccomp program every command is run under.</summary>
    public static async Task<WarmSandbox> AttachAsync(Process process, CallGroup? group, string workspacePath, SandboxUser user, (ulong, ulong) workspace)
    {
        var sandbox = new WarmSandbox(process, group, workspacePath, user, workspace);
        if (SeccompFilter.Filter is { } filter)
        {
            try
            {
                await sandbox.SendAsync(SeccompFrame, filter, CancellationToken.None);
            }
            catch (IOException)
            {
                // Died at start: the first call finds it stopped and runs cold (its stderr says why).
            }
        }

        return sandbox;
    }

    /// <summary>The device and inode of a folder, or (0, 0) when it is gone.</summary>
    public static (ulong Device, ulong Inode) WorkspaceIdentity(string path) =>
        StatxPath(Libc.AT_FDCWD, path, 0, Libc.STATX_BASIC_STATS, out var stat) == 0 ? (stat.Device, stat.Inode) : (0, 0);

    /// <summary>Takes the sandbox for one call; false when another call of the session is using it.</summary>
    public bool TryLease() => _lease.Wait(0);

    public void EndLease()
    {
        LastUsed = Environment.TickCount64;
        _lease.Release();
    }

    /// <summary>
    /// Runs one command (the caller holds the lease). Null when nothing ran: the sandbox is unusable (the init died or
    /// could not set the command up) and the caller runs the command elsewhere.
    /// </summary>
    /// <param name="memoryNote">The line stderr ends with when the kernel killed a process of the call for the group's memory.</param>
    public async Task<SandboxResult?> RunAsync(WarmRequest request, int timeout, int outputLimit, string memoryNote, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var oomAtStart = Group?.OutOfMemoryKills ?? 0;
        try
        {
            await SendAsync(RunFrame, request.Encode(), cancellationToken);
        }
        catch (IOException)
        {
            return null;
        }

        var stdout = new OutputCapture(outputLimit);
        var stderr = new OutputCapture(outputLimit);
        var started = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var replies = ReadRepliesAsync(stdout, stderr, started);
        if (!await started.Task)
        {
            await replies;
            return null;
        }

        HasRun = true;
        var timedOut = false;
        var outOfMemory = false;
        var waitStatus = (int?)null;
        using (var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            limit.CancelAfter(TimeSpan.FromSeconds(timeout));
            var watch = Group is null ? Task.CompletedTask : WatchMemoryAsync(Group, oomAtStart, limit);
            try
            {
                waitStatus = await replies.WaitAsync(limit.Token);
            }
            catch (OperationCanceledException)
            {
                outOfMemory = Group is not null && Group.OutOfMemoryKills > oomAtStart;
                timedOut = !cancellationToken.IsCancellationRequested && !outOfMemory;
                waitStatus = await KillAsync(replies);
            }

            await limit.CancelAsync();
            await watch;
        }

        clock.Stop();
        cancellationToken.ThrowIfCancellationRequested();
        outOfMemory |= Group is not null && Group.OutOfMemoryKills > oomAtStart;
        var (output, outputCut, outputBytes) = stdout.Finish();
        var (errors, errorsCut, errorBytes) = stderr.Finish();
        // The init died under the command (its PID namespace took the command with it): a SIGKILL, as the shell says.
        var status = waitStatus ?? 9;
        var exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);
        var killed = timedOut || outOfMemory || waitStatus is null || exitCode is > 128 and <= 128 + 64;
        return new SandboxResult(exitCode, output, outOfMemory ? errors + memoryNote : errors, outputCut || errorsCut, clock.ElapsedMilliseconds,
            timedOut, killed)
        {
            StdoutOutput = outputBytes,
            StderrOutput = errorBytes,
        };
    }

    /// <summary>The first bytes the init and bubblewrap wrote to stderr (why a sandbox did not start).</summary>
    public async Task<string> ErrorsAsync()
    {
        var done = await Task.WhenAny(_errors, Task.Delay(TimeSpan.FromSeconds(1)));
        return done == _errors ? await _errors : "";
    }

    /// <summary>Kills the whole sandbox (the init, bubblewrap, anything left) and removes its control group.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1)
        {
            return;
        }

        try
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(TimeSpan.FromSeconds(5));
        }
        catch (InvalidOperationException)
        {
            // It had exited already.
        }

        _process.Dispose();
        Group?.Release();
    }

    // Asks the init to kill the command's PID namespace and waits for its exit status; a sandbox that does not answer
    // in time is stopped as a whole (which kills the command too).
    private async Task<int?> KillAsync(Task<int?> replies)
    {
        try
        {
            await SendAsync(KillFrame, [], CancellationToken.None);
            return await replies.WaitAsync(KillGrace);
        }
        catch (Exception e) when (e is IOException or TimeoutException)
        {
            Dispose();
            return await replies;
        }
    }

    /// <summary>Reads the call's frames up to its exit status; null when the init went away first.</summary>
    private async Task<int?> ReadRepliesAsync(OutputCapture stdout, OutputCapture stderr, TaskCompletionSource<bool> started)
    {
        var header = new byte[5];
        var payload = new byte[64 * 1024];
        try
        {
            while (true)
            {
                await _replies.ReadExactlyAsync(header);
                var length = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(1));
                if (length < 0 || length > 8 * 1024 * 1024)
                {
                    throw new IOException($"harness-init sent a frame of {length} bytes.");
                }

                if (payload.Length < length)
                {
                    payload = new byte[length];
                }

                await _replies.ReadExactlyAsync(payload.AsMemory(0, length));
                switch (header[0])
                {
                    case StartedFrame:
                        started.TrySetResult(true);
                        break;
                    case StdoutFrame:
                        stdout.Append(payload.AsSpan(0, length));
                        break;
                    case StderrFrame:
                        stderr.Append(payload.AsSpan(0, length));
                        break;
                    case ExitFrame when length == 4:
                        return BinaryPrimitives.ReadInt32LittleEndian(payload);
                    case FailedFrame:
                        Failure = Encoding.UTF8.GetString(payload, 0, length);
                        started.TrySetResult(false);
                        return null;
                    default:
                        throw new IOException($"harness-init sent an unknown frame '{(char)header[0]}'.");
                }
            }
        }
        catch (Exception e) when (e is IOException or EndOfStreamException or ObjectDisposedException)
        {
            Failure ??= e.Message;
            Volatile.Write(ref _stopped, 1);
            started.TrySetResult(false);
            return null;
        }
    }

    /// <summary>Why the last command could not be set up or the init went away, for the log.</summary>
    public string? Failure { get; private set; }

    private async Task SendAsync(byte type, byte[] payload, CancellationToken cancellationToken)
    {
        var frame = new byte[5 + payload.Length];
        frame[0] = type;
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(1), payload.Length);
        payload.CopyTo(frame, 5);
        try
        {
            await _control.WriteAsync(frame, cancellationToken);
            await _control.FlushAsync(cancellationToken);
        }
        catch (ObjectDisposedException e)
        {
            throw new IOException("The warm sandbox is stopped.", e);
        }
    }

    private static async Task WatchMemoryAsync(CallGroup group, long killsAtStart, CancellationTokenSource limit)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        try
        {
            while (await timer.WaitForNextTickAsync(limit.Token))
            {
                if (group.OutOfMemoryKills > killsAtStart)
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

    private static async Task<string> DrainAsync(Stream stream)
    {
        using var kept = new MemoryStream();
        var buffer = new byte[4096];
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            kept.Write(buffer, 0, (int)Math.Min(read, Math.Max(0, KeptErrorBytes - kept.Length)));
        }

        return Encoding.UTF8.GetString(kept.GetBuffer().AsSpan(0, (int)kept.Length));
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static partial int StatxPath(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, out Libc.Statx buffer);
}

/// <summary>One command for <c>harness-init</c>: the limits <c>prlimit</c> sets on the cold path, the program and its environment.</summary>
internal sealed record WarmRequest(int CpuSeconds, long AddressSpace, long Processes, long FileSize, long TmpBytes, long ShmBytes,
    IReadOnlyList<string> Argv, IReadOnlyList<string> Environment)
{
    public byte[] Encode()
    {
        using var frame = new MemoryStream();
        Span<byte> number = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(number, (uint)CpuSeconds);
        frame.Write(number[..4]);
        foreach (var value in new[] { AddressSpace, Processes, FileSize, TmpBytes, ShmBytes })
        {
            BinaryPrimitives.WriteInt64LittleEndian(number, value);
            frame.Write(number);
        }

        foreach (var strings in new[] { Argv, Environment })
        {
            BinaryPrimitives.WriteUInt32LittleEndian(number, (uint)strings.Count);
            frame.Write(number[..4]);
            foreach (var text in strings)
            {
                frame.Write(Encoding.UTF8.GetBytes(text));
                frame.WriteByte(0);
            }
        }

        return frame.ToArray();
    }
}
