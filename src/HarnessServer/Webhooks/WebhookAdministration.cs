using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Webhooks;

/// <summary>The body of <c>PUT /v1/admin/webhook</c>.</summary>
internal sealed record WebhookBody(string? Url, string? Secret, bool IncludeArguments = false);

/// <summary>A tenant's webhook as admins read it: never the secret.</summary>
internal sealed record WebhookView(string Url, bool IncludeArguments, bool SecretSet, string UpdatedBy, DateTimeOffset UpdatedAt);

/// <summary>One delivery and its attempts, newest delivery first.</summary>
internal sealed record WebhookDeliveryView(
    Guid Id, string Event, string Status, int Attempts, DateTimeOffset CreatedAt, DateTimeOffset? DeliveredAt, DateTimeOffset? NextAttemptAt,
    int? LastStatusCode, string? LastError, IReadOnlyList<WebhookAttemptView> Log);

internal sealed record WebhookAttemptView(int Attempt, DateTimeOffset At, int? StatusCode, string? Error, long DurationMs);

internal sealed record WebhookDeliveryList(IReadOnlyList<WebhookDeliveryView> Deliveries);

/// <summary>Admins set, read and remove their tenant's webhook (audited without the secret) and read its delivery log.</summary>
internal sealed class WebhookAdministration(HarnessDbContext db, AuditChain audit, WebhookSecrets secrets, WebhookUrl urls, TimeProvider time)
{
    public const int MinSecret = 16;
    public const int MaxSecret = 512;

    public async Task<WebhookView> GetAsync(CancellationToken cancellationToken) =>
        await db.TenantWebhooks.AsNoTracking().FirstOrDefaultAsync(cancellationToken) is { } webhook
            ? View(webhook)
            : throw new HarnessError(ErrorKind.NotFound, "webhook_not_configured", "This tenant has no webhook; PUT /v1/admin/webhook sets one.");

    public async Task<WebhookView> PutAsync(CurrentUser admin, WebhookBody body, CancellationToken cancellationToken)
    {
        var url = urls.Validate(body.Url).AbsoluteUri;
        if (body.Secret is not { Length: >= MinSecret and <= MaxSecret } secret || secret.Contains('\0', StringComparison.Ordinal))
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_webhook_secret",
                $"The secret is {MinSecret} to {MaxSecret} characters without NUL; the receiver checks signatures with it, so make it random.");
        }

        var now = time.GetUtcNow();
        var sealedSecret = secrets.Protect(admin.TenantId, secret);
        await audit.AppendAsync(admin.TenantId, async (unit, ct) =>
        {
            var existing = await unit.Db.TenantWebhooks.FirstOrDefaultAsync(ct);
            var before = existing?.Url;
            if (existing is null)
            {
                unit.Db.TenantWebhooks.Add(new TenantWebhook
                {
                    TenantId = admin.TenantId, Url = url, SecretCiphertext = sealedSecret, IncludeArguments = body.IncludeArguments,
                    UpdatedBy = admin.UserId, UpdatedAt = now,
                });
            }
            else
            {
                (existing.Url, existing.SecretCiphertext, existing.IncludeArguments, existing.UpdatedBy, existing.UpdatedAt) =
                    (url, sealedSecret, body.IncludeArguments, admin.UserId, now);
            }

            await unit.Db.SaveChangesAsync(ct);
            // The secret is never in the chain: only that it was replaced.
            return (0, (IReadOnlyList<AuditEntry>)[new AuditEntry("webhook.configured", new AuditActor(admin.UserId, admin.DisplayName),
                Payload: new JsonObject { ["before"] = before, ["url"] = url, ["includeArguments"] = body.IncludeArguments, ["secretReplaced"] = true })]);
        }, cancellationToken);
        return new WebhookView(url, body.IncludeArguments, true, admin.UserId, now);
    }

    public async Task DeleteAsync(CurrentUser admin, CancellationToken cancellationToken)
    {
        var removed = await audit.AppendAsync(admin.TenantId, async (unit, ct) =>
        {
            var url = await unit.Db.TenantWebhooks.Select(w => w.Url).FirstOrDefaultAsync(ct);
            if (url is null)
            {
                return (false, (IReadOnlyList<AuditEntry>)[]);
            }

            await unit.Db.TenantWebhooks.ExecuteDeleteAsync(ct);
            return (true, (IReadOnlyList<AuditEntry>)[new AuditEntry("webhook.removed", new AuditActor(admin.UserId, admin.DisplayName),
                Payload: new JsonObject { ["url"] = url })]);
        }, cancellationToken);
        if (!removed.Result)
        {
            throw new HarnessError(ErrorKind.NotFound, "webhook_not_configured", "This tenant has no webhook to remove.");
        }
    }

    public async Task<WebhookDeliveryList> DeliveriesAsync(string? status, int? limit, CancellationToken cancellationToken)
    {
        if (limit is < 1 or > 200)
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_limit", "limit is 1 to 200.");
        }

        var query = db.WebhookDeliveries.AsNoTracking();
        if (!string.IsNullOrEmpty(status))
        {
            var parsed = Enum.GetNames<WebhookDeliveryStatus>().FirstOrDefault(n => string.Equals(n, status, StringComparison.OrdinalIgnoreCase))
                ?? throw new HarnessError(ErrorKind.Invalid, "invalid_status", $"Unknown delivery status '{status}'; use pending, delivered or failed.");
            var s = Enum.Parse<WebhookDeliveryStatus>(parsed);
            query = query.Where(d => d.Status == s);
        }

        var deliveries = await query.OrderByDescending(d => d.CreatedAt).ThenBy(d => d.Id).Take(limit ?? 50).ToListAsync(cancellationToken);
        var ids = deliveries.Select(d => d.Id).ToArray();
        var attempts = (await db.WebhookAttempts.AsNoTracking().Where(a => ids.Contains(a.DeliveryId)).OrderBy(a => a.Attempt).ToListAsync(cancellationToken))
            .ToLookup(a => a.DeliveryId);
        return new WebhookDeliveryList([.. deliveries.Select(d => new WebhookDeliveryView(
            d.Id, d.Event, d.Status.ToString().ToLowerInvariant(), d.Attempts, d.CreatedAt, d.DeliveredAt,
            d.Status == WebhookDeliveryStatus.Pending ? d.NextAttemptAt : null, d.LastStatusCode, d.LastError,
            [.. attempts[d.Id].Select(a => new WebhookAttemptView(a.Attempt, a.At, a.StatusCode, a.Error, a.DurationMs))]))]);
    }

    private static WebhookView View(TenantWebhook webhook) => new(webhook.Url, webhook.IncludeArguments, true, webhook.UpdatedBy, webhook.UpdatedAt);
}
