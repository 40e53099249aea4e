namespace HarnessServer.Policies;

/// <summary>
/// The outcome of one call: the effect, who decided it (<see cref="DecidedBy"/>: a rule, or the org default when
/// <see cref="Index"/> is null) and why. For a <c>shell.exec</c> line, <see cref="SimpleCommand"/> names the simple
/// command that decided it. A value type over preallocated rule metadata, so deciding does not allocate.
/// </summary>
internal readonly record struct PolicyDecision(PolicyEffect Effect, PolicyRuleInfo DecidedBy, string Reason)
{
    public PolicyLevel Level => DecidedBy.Level;

    public string Source => DecidedBy.Source;

    public int? Index => DecidedBy.Index;

    /// <summary>True when the call could not be classified (a shell line outside the plain subset, an escaping path).</summary>
    public bool Unclassifiable { get; init; }

    /// <summary>The whole shell command line, when the call was a <c>shell.exec</c>.</summary>
    public string? CommandLine { get; init; }

    /// <summary>Where in <see cref="CommandLine"/> the deciding simple command is.</summary>
    public Range SimpleCommandRange { get; init; }

    /// <summary>Where in <see cref="CommandLine"/> the deciding word is: the program, or the word that runs other code.</summary>
    public Range WordRange { get; init; }

    /// <summary>The <see cref="ShellPrograms"/> entry that made the deciding command a code-running form, or -1.</summary>
    public short Form { get; init; } = -1;

    /// <summary>The deciding simple command as written (allocates; for explanations only).</summary>
    public string? SimpleCommand => CommandLine is null || Unclassifiable ? null : CommandLine[SimpleCommandRange].Trim();

    /// <summary>The deciding word as written (allocates; for explanations only).</summary>
    public string? Word => CommandLine is null || Unclassifiable ? null : CommandLine[WordRange];

    /// <summary>
    /// <see cref="Reason"/>, and for a shell line which simple command and which word decided it and, for a form
    /// that runs other code, why only a rule naming it admits it (allocates; for explanations and audit).
    /// </summary>
    public string Explanation
    {
        get
        {
            if (SimpleCommand is not { } command)
            {
                return Reason;
            }

            var form = Form >= 0
                ? $" ({ShellPrograms.Name(Form)}: {ShellPrograms.Reason(Form)}; only a rule naming this word before any wildcard, or one without a command matcher, allows it)"
                : "";
            return $"{Reason}; decided by the simple command '{command}' at the word '{Word}'{form}";
        }
    }
}

/// <summary>A user's effective permissions, shaped for <c>GET /v1/me/permissions</c>.</summary>
internal sealed record PermissionMatrix(IReadOnlyList<ToolPermission> Tools);

/// <summary>
/// One tool of the matrix: <see cref="Effect"/> is what a call whose arguments match no argument-constrained rule
/// gets; <see cref="Rules"/> are every rule that can decide a call of the tool, most specific level first.
/// </summary>
internal sealed record ToolPermission(string Tool, string Effect, IReadOnlyList<PermissionRule> Rules);

internal sealed record PermissionRule(
    string Level,
    string Source,
    int Index,
    string Effect,
    IReadOnlyDictionary<string, IReadOnlyList<string>> Args,
    bool Locked,
    string Reason);
