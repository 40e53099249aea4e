namespace HarnessServer.Pipeline;

/// <summary>The <c>Harness:Recovery</c> section.</summary>
internal sealed class RecoveryOptions
{
    /// <summary>
    /// How often running calls whose process no longer holds their lock are looked for and recorded
    /// <c>interrupted</c> (besides at start): a call whose executed event could not be written is found without a restart.
    /// </summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromMinutes(1);
}
