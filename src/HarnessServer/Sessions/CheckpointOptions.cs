namespace HarnessServer.Sessions;

/// <summary>The <c>Harness:Checkpoints</c> section: how long checkpoints are kept and how often their blobs are collected.</summary>
internal sealed class CheckpointOptions
{
    /// <summary>How often each tenant's store is collected (and, with <see cref="KeepPerSession"/>, pruned).</summary>
    public TimeSpan CollectInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>The newest checkpoints each session keeps; older ones can no longer be rolled back to. 0 keeps all.</summary>
    public int KeepPerSession { get; set; }
}
