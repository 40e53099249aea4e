using HarnessServer.Data;

namespace HarnessServer.Webhooks;

/// <summary>
/// A tenant's outbound webhook: where approval events go and the secret their signature is made with. The secret is
/// stored only encrypted (<see cref="WebhookSecrets"/>) and is never answered, logged or audited.
/// </summary>
internal sealed class TenantWebhook : ITenantOwned
{
    public required string TenantId { get; set; }
    public required string Url { get; set; }
    public required byte[] SecretCiphertext { get; set; }

    /// <summary>Whether payloads carry the held call's arguments and preview; off unless the tenant opts in.</summary>
    public bool IncludeArguments { get; set; }
    public required string UpdatedBy { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

internal enum WebhookDeliveryStatus
{
    Pending,
    Delivered,
    Failed,
}

/// <summary>
/// One event to deliver (the outbox row, written in the transaction of what it reports) and its log: attempts so
/// far, the last answer, and when the next attempt is due.
/// </summary>
internal sealed class WebhookDelivery : ITenantOwned
{
    public Guid Id { get; init; }
    public required string TenantId { get; set; }
    public required string Event { get; init; }

    /// <summary>The exact JSON body that is signed and sent.</summary>
    public required string Body { get; init; }
    public WebhookDeliveryStatus Status { get; set; }
    public int Attempts { get; set; }
    public DateTimeOffset NextAttemptAt { get; set; }
    public int? LastStatusCode { get; set; }
    public string? LastError { get; set; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? DeliveredAt { get; set; }
}

/// <summary>One attempt of a delivery: when, what the receiver answered (or why nothing), how long it took.</summary>
internal sealed class WebhookAttempt : ITenantOwned
{
    public Guid DeliveryId { get; init; }
    public int Attempt { get; init; }
    public required string TenantId { get; set; }
    public DateTimeOffset At { get; init; }
    public int? StatusCode { get; init; }
    public string? Error { get; init; }
    public long DurationMs { get; init; }
}
