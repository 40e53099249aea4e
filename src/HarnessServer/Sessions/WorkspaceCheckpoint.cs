using HarnessServer.Data;

namespace HarnessServer.Sessions;

/// <summary>The workspace as it was just before a call that could change it; its content is in the object store.</summary>
internal sealed class WorkspaceCheckpoint : ITenantOwned
{
    public Guid Id { get; init; }
    public required string TenantId { get; set; }
    public Guid SessionId { get; init; }
    /// <summary>The pipeline call that followed the snapshot.</summary>
    public Guid ToolCallId { get; init; }
    public required string Tool { get; init; }
    /// <summary>The SHA-256 of the checkpoint's root tree in <see cref="WorkspaceCheckpoints"/>.</summary>
    public required string TreeHash { get; init; }
    public int Files { get; init; }
    public long Bytes { get; init; }
    public int Skipped { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? RestoredAt { get; set; }
}
