namespace HarnessServer.Webhooks;

/// <summary>The <c>Harness:Webhooks</c> section: how deliveries are retried, and where they may go.</summary>
internal sealed class WebhookOptions
{
    /// <summary>How often the dispatcher looks for due deliveries it was not woken for.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The wait after the first failed attempt; it doubles with each further one, up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromSeconds(10);

    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Attempts before a delivery is given up (<c>failed</c> in the log).</summary>
    public int MaxAttempts { get; set; } = 10;

    /// <summary>How long one attempt may take, connection included.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Networks (CIDR, such as <c>10.20.0.0/16</c> or <c>127.0.0.1/32</c>) a webhook may reach although they are not
    /// public; none by default, loopback in Development. Plain <c>http</c> is allowed only to loopback addresses here.
    /// </summary>
    public string[] AllowedNetworks { get; set; } = [];

    /// <summary>
    /// The file holding the key webhook secrets are encrypted with (created, mode 0600, when missing); by default
    /// <c>webhook-secret.key</c> beside the audit signing key.
    /// </summary>
    public string? SecretKeyPath { get; set; }
}
