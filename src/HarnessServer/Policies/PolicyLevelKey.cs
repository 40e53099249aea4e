namespace HarnessServer.Policies;

/// <summary>A policy level of a tenant as stored: <c>org</c>, <c>team:&lt;name&gt;</c> or <c>user:&lt;id&gt;</c>.</summary>
internal readonly record struct PolicyLevelKey(PolicyLevel Level, string? Name)
{
    public static readonly PolicyLevelKey Org = new(PolicyLevel.Org, null);

    public static PolicyLevelKey Team(string name) => new(PolicyLevel.Team, name);

    public static PolicyLevelKey User(string id) => new(PolicyLevel.User, id);

    public override string ToString() => Level switch
    {
        PolicyLevel.Org => "org",
        PolicyLevel.Team => $"team:{Name}",
        _ => $"user:{Name}",
    };

    public static PolicyLevelKey Parse(string key) => key switch
    {
        "org" => Org,
        _ when key.StartsWith("team:", StringComparison.Ordinal) => Team(key[5..]),
        _ when key.StartsWith("user:", StringComparison.Ordinal) => User(key[5..]),
        _ => throw new FormatException($"'{key}' is not a policy level."),
    };

    /// <summary>The name the level's rules are reported under (as a policy file path would be).</summary>
    public string SourceName(string tenant) => Level switch
    {
        PolicyLevel.Org => $"{tenant}/org.yaml",
        PolicyLevel.Team => $"{tenant}/teams/{Name}.yaml",
        _ => $"{tenant}/users/{Name}.yaml",
    };
}
