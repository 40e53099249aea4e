using System.Collections.Concurrent;

namespace HarnessServer.Policies;

/// <summary>
/// A tenant's compiled policy. Immutable: a changed file means compiling a new one. Hands out one cached
/// <see cref="PolicyResolver"/> per user and team set.
/// </summary>
internal sealed class CompiledPolicy
{
    // Bounds memory if callers invent user/team combinations; past it resolvers are built per call.
    private const int MaxCachedResolvers = 10_000;
    private readonly ConcurrentDictionary<string, PolicyResolver> _resolvers = new(StringComparer.Ordinal);
    private readonly IReadOnlyDictionary<string, CompiledDocument> _teams;
    private readonly IReadOnlyDictionary<string, CompiledDocument> _users;

    public CompiledPolicy(
        string tenant,
        CompiledDocument org,
        IReadOnlyDictionary<string, CompiledDocument> teams,
        IReadOnlyDictionary<string, CompiledDocument> users,
        PolicyRuleInfo orgDefault)
    {
        Tenant = tenant;
        Org = org;
        _teams = teams;
        _users = users;
        OrgDefault = orgDefault;
    }

    public string Tenant { get; }

    public CompiledDocument Org { get; }

    /// <summary>What a call no rule matches gets (deny unless the org file says ask).</summary>
    public PolicyRuleInfo OrgDefault { get; }

    /// <summary>The resolver for <paramref name="userId"/> in <paramref name="teams"/> (order and repeats do not matter).</summary>
    public PolicyResolver For(string userId, IReadOnlyList<string> teams)
    {
        ArgumentNullException.ThrowIfNull(userId);
        ArgumentNullException.ThrowIfNull(teams);
        var sorted = teams.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        // Length-prefixed so no user id or team name can forge another combination's key.
        var key = string.Concat(sorted.Prepend(userId).Select(part => $"{part.Length}:{part}"));
        if (_resolvers.TryGetValue(key, out var resolver))
        {
            return resolver;
        }

        resolver = new PolicyResolver(
            this,
            userId,
            sorted,
            _users.GetValueOrDefault(userId),
            [.. sorted.Select(t => _teams.GetValueOrDefault(t)).OfType<CompiledDocument>()]);
        return _resolvers.Count < MaxCachedResolvers ? _resolvers.GetOrAdd(key, resolver) : resolver;
    }
}
