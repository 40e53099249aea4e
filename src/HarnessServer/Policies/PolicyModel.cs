namespace HarnessServer.Policies;

/// <summary>What a policy says about a call. Ordered from least to most restrictive, so the larger value wins.</summary>
internal enum PolicyEffect
{
    Allow = 0,
    Ask = 1,
    Deny = 2,
}

/// <summary>Where a policy document sits; a more specific level decides before a less specific one.</summary>
internal enum PolicyLevel
{
    Org = 0,
    Team = 1,
    User = 2,
}

/// <summary>
/// One rule of a policy file. <see cref="Args"/> maps an argument name to its globs (any may match); a rule matches
/// a call only when its tool glob and every argument matcher match.
/// </summary>
internal sealed record PolicyRule(
    string Tool,
    PolicyEffect Effect,
    IReadOnlyDictionary<string, IReadOnlyList<string>> Args,
    bool Locked = false,
    string? Reason = null,
    ApprovalRouting? Routing = null)
{
    public static readonly IReadOnlyDictionary<string, IReadOnlyList<string>> NoArgs =
        new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
}

/// <summary>
/// Who may approve a call an <c>ask</c> rule holds (its <c>approvers</c>, <c>quorum</c>, <c>self</c> and <c>expires</c>
/// keys). <see cref="Approvers"/> holds <c>team:&lt;name&gt;</c> and <c>role:&lt;name&gt;</c> entries; empty means the
/// default: approvers of the requester's teams, and admins. <see cref="Expires"/> null means
/// <c>Harness:Approvals:Expiry</c>. The requester may approve their own call only when <see cref="SelfApproval"/>.
/// </summary>
internal sealed record ApprovalRouting(IReadOnlyList<string> Approvers, int Quorum, bool SelfApproval, TimeSpan? Expires)
{
    public const int MaxQuorum = 10;
    public static readonly TimeSpan MinExpiry = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan MaxExpiry = TimeSpan.FromDays(30);

    /// <summary>What an ask without routing keys (and the org default) means: as before routing existed.</summary>
    public static readonly ApprovalRouting Default = new([], 1, false, null);
}

/// <summary>
/// One parsed policy file. <see cref="Default"/> is only allowed at <see cref="PolicyLevel.Org"/>; when absent the
/// org default is deny.
/// </summary>
internal sealed record PolicyDocument(PolicyLevel Level, string Source, PolicyEffect? Default, IReadOnlyList<PolicyRule> Rules)
{
    public static PolicyDocument Empty(PolicyLevel level, string source) => new(level, source, null, []);
}

/// <summary>A problem in a policy file, with its 1-based line and column.</summary>
internal sealed record PolicyError(string Source, int Line, int Column, string Message)
{
    public override string ToString() => $"{Source}({Line},{Column}): {Message}";
}

/// <summary>Either the parsed document or the errors that kept it from being one (never both).</summary>
internal sealed record PolicyParseResult(PolicyDocument? Document, IReadOnlyList<PolicyError> Errors)
{
    public bool IsValid => Document is not null;
}

/// <summary>
/// All policy documents of one tenant: the org level, each team's by team name and each user's by user id.
/// </summary>
internal sealed record PolicySet(
    string Tenant,
    PolicyDocument Org,
    IReadOnlyDictionary<string, PolicyDocument> Teams,
    IReadOnlyDictionary<string, PolicyDocument> Users)
{
    public static PolicySet Empty(string tenant) => new(
        tenant,
        PolicyDocument.Empty(PolicyLevel.Org, $"{tenant}/org.yaml"),
        new Dictionary<string, PolicyDocument>(StringComparer.Ordinal),
        new Dictionary<string, PolicyDocument>(StringComparer.Ordinal));
}
