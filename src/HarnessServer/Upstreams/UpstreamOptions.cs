namespace HarnessServer.Upstreams;

/// <summary>The <c>Harness:Upstreams</c> section: where credential keys live, and the time limits of upstream calls.</summary>
internal sealed class UpstreamOptions
{
    /// <summary>The time limit of one upstream call when its registration names none.</summary>
    public int DefaultTimeoutSeconds { get; set; } = 30;

    /// <summary>The most a registration may give one upstream call.</summary>
    public int MaxTimeoutSeconds { get; set; } = 300;

    public bool IsValid() =>
        DefaultTimeoutSeconds > 0 && MaxTimeoutSeconds >= DefaultTimeoutSeconds;
}
