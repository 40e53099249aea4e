using HarnessServer.Tools;

namespace HarnessServer.Sandbox;

/// <summary>
/// One command to run in a fresh sandbox. Exactly one of <see cref="Command"/> (a shell line, run by <c>sh -c</c>:
/// <c>shell.exec</c>) and <see cref="Argv"/> (separate arguments, never shell text: administrator-defined command
/// tools) is set.
/// </summary>
internal sealed record SandboxCommand
{
    /// <summary>The host path of the session workspace (<see cref="Workspace.FullPath"/>), mounted at <c>/workspace</c>.</summary>
    public required string WorkspacePath { get; init; }

    /// <summary>The host user the sandbox runs as: the workspace's <see cref="Workspace.Owner"/>, the tenant's own.</summary>
    public required SandboxUser User { get; init; }

    public string? Command { get; init; }

    public IReadOnlyList<string>? Argv { get; init; }

    /// <summary>Wall-time limit; <c>DefaultTimeoutSeconds</c> when null, at most <c>MaxTimeoutSeconds</c>.</summary>
    public int? TimeoutSeconds { get; init; }

    /// <summary>Extra environment variables, on top of <c>PATH</c>, <c>HOME</c>, <c>LANG</c> and <c>TMPDIR</c>.</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }
}

/// <summary>
/// What one sandboxed command did. <see cref="ExitCode"/> is 128 + the signal when the command was killed by one;
/// <see cref="Killed"/> says so (the time limit, the CPU limit or memory exhaustion — a command that itself exits
/// with such a code reads the same). Each stream is cut at <c>MaxOutputBytes</c> with a marker when
/// <see cref="Truncated"/>.
/// </summary>
internal sealed record SandboxResult(int ExitCode, string Stdout, string Stderr, bool Truncated, long DurationMs, bool TimedOut, bool Killed)
{
    /// <summary>stdout as a result stores it: the text when it is UTF-8 without NUL, else base64 (<see cref="Stdout"/> replaces invalid bytes).</summary>
    public OutputText StdoutOutput { get; init; }

    /// <summary>stderr as a result stores it (see <see cref="StdoutOutput"/>).</summary>
    public OutputText StderrOutput { get; init; }

    /// <summary>Whether the call counts as <c>succeeded</c> under the contract.</summary>
    public bool Succeeded => ExitCode == 0 && !TimedOut;
}
