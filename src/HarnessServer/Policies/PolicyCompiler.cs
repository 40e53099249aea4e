namespace HarnessServer.Policies;

/// <summary>Turns a tenant's parsed documents into a <see cref="CompiledPolicy"/> that decides calls quickly.</summary>
internal static class PolicyCompiler
{
    /// <summary>
    /// Compiles <paramref name="set"/>. Throws <see cref="ArgumentException"/> when a document was not produced by
    /// <see cref="PolicyParser"/> and holds an invalid glob or sits at the wrong level.
    /// </summary>
    public static CompiledPolicy Compile(PolicySet set)
    {
        ArgumentNullException.ThrowIfNull(set);
        Require(set.Org, PolicyLevel.Org);
        foreach (var team in set.Teams.Values)
        {
            Require(team, PolicyLevel.Team);
        }

        foreach (var user in set.Users.Values)
        {
            Require(user, PolicyLevel.User);
        }

        var org = new CompiledDocument(set.Org, PolicyLevel.Org);
        var fallback = set.Org.Default ?? PolicyEffect.Deny;
        var defaultInfo = new PolicyRuleInfo(PolicyLevel.Org, set.Org.Source, null, fallback, false,
            $"no rule matched; org default ({fallback.ToString().ToLowerInvariant()})", null);
        return new CompiledPolicy(
            set.Tenant,
            org,
            set.Teams.ToDictionary(t => t.Key, t => new CompiledDocument(t.Value, PolicyLevel.Team), StringComparer.Ordinal),
            set.Users.ToDictionary(u => u.Key, u => new CompiledDocument(u.Value, PolicyLevel.User), StringComparer.Ordinal),
            defaultInfo);
    }

    private static void Require(PolicyDocument document, PolicyLevel level)
    {
        if (document.Level != level)
        {
            throw new ArgumentException($"{document.Source} is a {document.Level} document used at {level} level.", nameof(document));
        }

        if (level != PolicyLevel.Org && document.Default is not null)
        {
            throw new ArgumentException($"{document.Source} sets a default outside the org level.", nameof(document));
        }
    }
}
