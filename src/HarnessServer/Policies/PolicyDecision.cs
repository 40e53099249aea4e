using System.Text.Json.Serialization;

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

    /// <summary>Who approves the call when the effect is ask (the deciding rule's routing, or the default); otherwise null.</summary>
    public ApprovalRouting? Routing => Effect == PolicyEffect.Ask ? DecidedBy.Rule?.Routing ?? ApprovalRouting.Default : null;

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
internal sealed record ToolPermission(string Tool, string Effect, IReadOnlyList<PermissionRule> Rules)
{
    /// <summary>Who approves when <see cref="Effect"/> is ask; null otherwise.</summary>
    [JsonPropertyName("approval")]
    public ApprovalRequirements? Approvers { get; init; }
}

internal sealed record PermissionRule(
    string Level,
    string Source,
    int Index,
    string Effect,
    IReadOnlyDictionary<string, IReadOnlyList<string>> Args,
    bool Locked,
    string Reason)
{
    /// <summary>Who approves a call this rule asks about; null unless the rule's effect is ask.</summary>
    [JsonPropertyName("approval")]
    public ApprovalRequirements? Approvers { get; init; }
}

/// <summary>
/// Who would approve a call an ask holds, as the matrix and <c>simulate</c> show it: the rule's <see cref="Approvers"/>
/// (empty with <see cref="DefaultApprovers"/>: approvers of the requester's teams, and admins), how many distinct
/// approvers (<see cref="Quorum"/>), whether the requester may approve their own call (<see cref="Self"/>: allow or
/// deny) and after how many seconds it expires (<see cref="ExpiresSeconds"/>; null: <c>Harness:Approvals:Expiry</c>).
/// </summary>
internal sealed record ApprovalRequirements(IReadOnlyList<string> Approvers, bool DefaultApprovers, int Quorum, string Self, long? ExpiresSeconds, string Who)
{
    public static ApprovalRequirements? Of(ApprovalRouting? routing, TimeSpan? defaultExpiry = null)
    {
        if (routing is null)
        {
            return null;
        }

        var named = routing.Approvers.Count > 0;
        var who = named
            ? string.Join(", ", routing.Approvers.Select(a => a.StartsWith("team:", StringComparison.Ordinal) ? $"members of team {a[5..]}" : $"holders of role {a[5..]}"))
            : "approvers (role harness.approver) of a team of the requester, and admins";
        who += routing.Quorum == 1 ? "; one approval runs the call" : $"; {routing.Quorum} distinct approvers must approve";
        who += routing.SelfApproval ? "; the requester may approve their own call" : "; never the requester";
        return new ApprovalRequirements(
            routing.Approvers, !named, routing.Quorum, routing.SelfApproval ? "allow" : "deny",
            (long?)(routing.Expires ?? defaultExpiry)?.TotalSeconds, who);
    }
}
