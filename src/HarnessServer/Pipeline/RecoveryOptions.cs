namespace HarnessServer.Pipeline;

/// <summary>The <c>Harness:Recovery</c> section.</summary>
internal sealed class RecoveryOptions
{
    /// <summary>
    /// How often running calls whose process no longer holds their lock are looked for and recorded
    /// <c>interrupted</c> (besides at start): a call whose executed event could not be written is found without a restart.
    /// </summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How long a replica's execution lease on a session lasts without renewal (<see cref="CallLeases"/>; renewed every
    /// third of it while the call runs). A replica killed mid-call has its call recorded <c>interrupted</c> by another
    /// replica's sweep once this has passed; a replica cut off from the database stops its call by then.
    /// </summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often a call whose session's lease another replica holds asks for it again.</summary>
    public TimeSpan LeaseRetryInterval { get; set; } = TimeSpan.FromMilliseconds(500);
}
