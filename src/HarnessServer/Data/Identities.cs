namespace HarnessServer.Data;

/// <summary>A tenant, known from the first token that names it.</summary>
internal sealed class Tenant
{
    public required string Id { get; init; }
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Given once by the database; the tenant's sandbox user is <c>TenantUidBase</c> + this.</summary>
    public long SandboxIndex { get; init; }
}

/// <summary>A user of one tenant, provisioned just in time from token claims.</summary>
internal sealed class User : ITenantOwned
{
    public required string TenantId { get; set; }
    public required string Id { get; init; }
    public required string DisplayName { get; set; }
    public DateTimeOffset FirstSeenAt { get; init; }
    public DateTimeOffset LastSeenAt { get; set; }
}

/// <summary>A team of one tenant, known from the groups claim of its members' tokens.</summary>
internal sealed class Team : ITenantOwned
{
    public required string TenantId { get; set; }
    public required string Name { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>A user's membership of a team, as their latest token said.</summary>
internal sealed class TeamMembership : ITenantOwned
{
    public required string TenantId { get; set; }
    public required string TeamName { get; init; }
    public required string UserId { get; init; }
}
