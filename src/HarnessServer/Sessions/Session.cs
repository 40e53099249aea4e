using HarnessServer.Data;

namespace HarnessServer.Sessions;

internal enum SessionStatus
{
    Active,
    Paused,
}

/// <summary>A conversation and its workspace, owned by one user of one tenant.</summary>
internal sealed class Session : ITenantOwned
{
    public Guid Id { get; init; }
    public required string TenantId { get; set; }
    public required string OwnerUserId { get; init; }
    public required string OwnerName { get; init; }
    public SessionStatus Status { get; set; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; set; }

    /// <summary>Optimistic concurrency token (PostgreSQL <c>xmin</c>).</summary>
    public uint Version { get; set; }
}
