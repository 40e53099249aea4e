namespace HarnessServer.Approvals;

/// <summary>The <c>Harness:Approvals</c> section.</summary>
internal sealed class ApprovalOptions
{
    /// <summary>How long a pending approval waits before it expires (and its call with it).</summary>
    public TimeSpan Expiry { get; set; } = TimeSpan.FromHours(24);

    /// <summary>How often the executor looks for approved calls and expired approvals it was not woken for.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(2);
}
