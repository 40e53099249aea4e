namespace HarnessServer.Policies;

/// <summary>
/// An admin's edit of one level before it is stored: checked as the store checks it plus the locks of the org level,
/// and decided against the tenant's stored policies with the edit in place of the level's stored version.
/// </summary>
internal sealed class PolicyDrafts(PolicyService policies)
{
    /// <summary>
    /// The parser's errors, or, for a team or user level, an error at every rule that tries to override a locked org
    /// rule: one whose tool the locked rule covers for every call (it constrains no argument) with another effect.
    /// Resolution would never let such a rule decide, so the edit would say something that is not true.
    /// </summary>
    public async Task<PolicyParseResult> CheckAsync(string tenant, PolicyLevelKey level, string content, CancellationToken cancellationToken)
    {
        var parsed = PolicyParser.Parse(content, level.Level, level.SourceName(tenant));
        if (parsed.Document is not { } document || level.Level == PolicyLevel.Org || document.Rules.Count == 0)
        {
            return parsed;
        }

        var org = (await policies.StoredSetAsync(tenant, cancellationToken)).Org;
        var locked = org.Rules.Select((rule, index) => (Rule: rule, Index: index, Tool: PolicyGlob.Parse(rule.Tool)))
            .Where(r => r.Rule.Locked && r.Rule.Args.Count == 0).ToList();
        if (locked.Count == 0)
        {
            return parsed;
        }

        var starts = PolicyParser.RuleStarts(content);
        var errors = new List<PolicyError>();
        for (var i = 0; i < document.Rules.Count; i++)
        {
            var rule = document.Rules[i];
            var tool = PolicyGlob.Parse(rule.Tool);
            var covering = locked.FirstOrDefault(l => l.Rule.Effect != rule.Effect
                && (l.Rule.Tool == rule.Tool || (tool.IsLiteral && l.Tool.IsMatch(tool.LiteralText))));
            if (covering.Rule is null)
            {
                continue;
            }

            var (line, column) = i < starts.Count ? starts[i] : (1, 1);
            var why = covering.Rule.Reason is { } reason ? $": {reason}" : "";
            errors.Add(new PolicyError(document.Source, line, column,
                $"rules[{i}]: {Effect(rule.Effect)} {rule.Tool} cannot take effect: org rule {covering.Index} of {org.Source} " +
                $"({Effect(covering.Rule.Effect)} {covering.Rule.Tool}{why}) is locked, and no team or user rule can override a locked rule; " +
                "remove this rule, or change the org policy"));
        }

        return errors.Count == 0 ? parsed : new PolicyParseResult(null, errors);
    }

    /// <summary>
    /// What <paramref name="tool"/> with <paramref name="arguments"/> would get for the user in the teams given, if
    /// <paramref name="draft"/> were stored as <paramref name="level"/>; nothing is stored or cached.
    /// </summary>
    public async Task<PolicyDecision> SimulateAsync(
        string tenant, PolicyLevelKey level, PolicyDocument draft, string user, IReadOnlyList<string> teams,
        string tool, IReadOnlyDictionary<string, string?> arguments, string workspaceRoot, CancellationToken cancellationToken)
    {
        var set = await policies.StoredSetAsync(tenant, cancellationToken);
        set = level.Level switch
        {
            PolicyLevel.Org => set with { Org = draft },
            PolicyLevel.Team => set with { Teams = new Dictionary<string, PolicyDocument>(set.Teams, StringComparer.Ordinal) { [level.Name!] = draft } },
            _ => set with { Users = new Dictionary<string, PolicyDocument>(set.Users, StringComparer.Ordinal) { [level.Name!] = draft } },
        };
        return PolicyCompiler.Compile(set).For(user, teams).Decide(tool, arguments, workspaceRoot);
    }

    private static string Effect(PolicyEffect effect) => effect.ToString().ToLowerInvariant();
}
