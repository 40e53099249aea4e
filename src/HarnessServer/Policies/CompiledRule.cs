namespace HarnessServer.Policies;

/// <summary>
/// Who decided a call: one rule of one source, or the org default (<see cref="Index"/> null). Built once when a
/// policy is compiled, so decisions can point at it without allocating.
/// </summary>
internal sealed record PolicyRuleInfo(PolicyLevel Level, string Source, int? Index, PolicyEffect Effect, bool Locked, string Reason, PolicyRule? Rule)
{
    /// <summary>Who approves a call this rule (or the org default) asks about; null unless the effect is ask.</summary>
    public ApprovalRouting? Routing => Effect == PolicyEffect.Ask ? Rule?.Routing ?? ApprovalRouting.Default : null;
}

/// <summary>One argument matcher of a compiled rule: the argument's name and its globs, any of which may match.</summary>
internal sealed class ArgumentMatcher(string name, PolicyGlob[] globs)
{
    public string Name { get; } = name;

    public PolicyGlob[] Globs { get; } = globs;

    public bool IsPath { get; } = name == "path";

    public bool IsCommand { get; } = name == "command";

    public bool IsMatch(ReadOnlySpan<char> value, bool crossesSlash)
    {
        foreach (var glob in Globs)
        {
            if (glob.IsMatch(value, crossesSlash))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Whether a glob matches <paramref name="value"/> spelling out the characters <paramref name="from"/> to <paramref name="to"/> literally.</summary>
    public bool IsMatchSpelling(ReadOnlySpan<char> value, bool crossesSlash, int from, int to)
    {
        foreach (var glob in Globs)
        {
            if (glob.IsMatchSpelling(value, crossesSlash, from, to))
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>A rule with its globs compiled and its explanation prepared.</summary>
internal sealed class CompiledRule
{
    public CompiledRule(PolicyRule rule, PolicyLevel level, string source, int index)
    {
        Tool = PolicyGlob.Parse(rule.Tool);
        Args = [.. rule.Args.Select(a => new ArgumentMatcher(a.Key, [.. a.Value.Select(PolicyGlob.Parse)]))];
        ConstrainsCommand = Array.Exists(Args, a => a.IsCommand);
        Effect = rule.Effect;
        // Only org rules can lock; the parser refuses the others, and a hand-built rule must not gain the power.
        Locked = rule.Locked && level == PolicyLevel.Org;
        Info = new PolicyRuleInfo(level, source, index, rule.Effect, Locked, rule.Reason ?? $"rule {index} of {source} ({EffectName(rule.Effect)} {rule.Tool})", rule);
    }

    public PolicyGlob Tool { get; }

    private static string EffectName(PolicyEffect effect) => effect switch
    {
        PolicyEffect.Allow => "allow",
        PolicyEffect.Ask => "ask",
        _ => "deny",
    };

    public ArgumentMatcher[] Args { get; }

    /// <summary>Whether the rule has a <c>command</c> matcher; one without matches every shell line.</summary>
    public bool ConstrainsCommand { get; }

    public PolicyEffect Effect { get; }

    public bool Locked { get; }

    public PolicyRuleInfo Info { get; }

    public PolicyLevel Level => Info.Level;

    public int Index => Info.Index ?? 0;
}

/// <summary>One compiled policy document, its rules indexed by exact tool name with the wildcard tool globs apart.</summary>
internal sealed class CompiledDocument
{
    private static readonly CompiledRule[] None = [];
    private readonly Dictionary<string, CompiledRule[]> _byTool;
    private readonly CompiledRule[] _wildcards;

    public CompiledDocument(PolicyDocument document, PolicyLevel level)
    {
        Source = document.Source;
        Rules = [.. document.Rules.Select((rule, index) => new CompiledRule(rule, level, document.Source, index))];
        _byTool = Rules.Where(r => r.Tool.IsLiteral)
            .GroupBy(r => r.Tool.LiteralText, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.ToArray(), StringComparer.Ordinal);
        _wildcards = [.. Rules.Where(r => !r.Tool.IsLiteral)];
    }

    public string Source { get; }

    public CompiledRule[] Rules { get; }

    /// <summary>The rules whose tool glob matches <paramref name="tool"/>, in file order.</summary>
    public IEnumerable<CompiledRule> RulesFor(string tool)
    {
        var exact = _byTool.GetValueOrDefault(tool, None);
        var wild = _wildcards.Where(r => r.Tool.IsMatch(tool));
        return exact.Concat(wild).OrderBy(r => r.Index);
    }
}
