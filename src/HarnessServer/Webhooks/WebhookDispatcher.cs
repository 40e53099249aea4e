using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using HarnessServer.Data;
using HarnessServer.Http;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Webhooks;

/// <summary>
/// Delivers the outbox: claims due deliveries of every tenant, tenant by tenant (<c>FOR UPDATE SKIP LOCKED</c>, with a lease, so two
/// server processes never send one at once and a crash mid-send only delays it), POSTs each signed body to the tenant's
/// URL, and records the attempt. A 2xx delivers it; anything else is retried with exponential backoff until
/// <see cref="WebhookOptions.MaxAttempts"/>, then it is failed. Woken through the change feed when a delivery is
/// queued; otherwise it polls.
/// </summary>
internal sealed class WebhookDispatcher : BackgroundService
{
    /// <summary>The headers of a delivery (docs/api.md, "Webhook").</summary>
    public const string SignatureHeader = "X-Harness-Signature";
    public const string TimestampHeader = "X-Harness-Timestamp";
    public const string EventHeader = "X-Harness-Event";
    public const string DeliveryHeader = "X-Harness-Delivery";

    private const int Batch = 16;
    private readonly DatabaseSources _sources;
    private readonly TenantDbContextFactory _contexts;
    private readonly WebhookSecrets _secrets;
    private readonly WebhookUrl _urls;
    private readonly WebhookOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<WebhookDispatcher> _logger;
    private readonly HttpClient _client;
    private readonly SemaphoreSlim _wake = new(0);

    public WebhookDispatcher(
        DatabaseSources sources, TenantDbContextFactory contexts, WebhookSecrets secrets, WebhookUrl urls, IOptions<WebhookOptions> options,
        TimeProvider time, ChangeFeed feed, ILogger<WebhookDispatcher> logger)
    {
        (_sources, _contexts, _secrets, _urls, _options, _time, _logger) = (sources, contexts, secrets, urls, options.Value, time, logger);
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseProxy = false,
            UseCookies = false,
            // Every address the name resolves to is checked at connection time, so a name cannot point at a private
            // address after the URL was accepted (DNS rebinding); plain http connects to loopback only.
            ConnectCallback = AddressGuard.ConnectCallback(
                (context, address) => _urls.Permits(address)
                    && (context.InitialRequestMessage.RequestUri?.Scheme != Uri.UriSchemeHttp || IPAddress.IsLoopback(address)),
                host => $"'{host}' resolves only to addresses a webhook may not reach (private, loopback or link-local, outside Harness:Webhooks:AllowedNetworks)."),
            PooledConnectionLifetime = TimeSpan.FromMinutes(1),
            ConnectTimeout = _options.Timeout,
        };
        _client = new HttpClient(handler) { Timeout = _options.Timeout };
        feed.Changed += (kind, _) =>
        {
            if (kind is WebhookOutbox.ChangeKind or ChangeFeed.AllKinds && _wake.CurrentCount == 0)
            {
                _wake.Release();
            }
        };
    }

    /// <summary>The signature of one attempt: <c>v1=</c> and the hex HMAC-SHA256, under the secret, of "timestamp.body".</summary>
    public static string Sign(ReadOnlySpan<byte> secret, long timestamp, string body) =>
        "v1=" + Convert.ToHexStringLower(HMACSHA256.HashData(secret, Encoding.UTF8.GetBytes($"{timestamp.ToString(CultureInfo.InvariantCulture)}.{body}")));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var claimed = 0;
            try
            {
                var due = await ClaimAsync(stoppingToken);
                claimed = due.Count;
                await Parallel.ForEachAsync(due, new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = stoppingToken }, DeliverAsync);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Whatever one pass met must not stop the dispatcher (an exception out of ExecuteAsync stops the host);
                // a claimed delivery whose attempt was not recorded is retried when its lease ends.
                _logger.LogWarning(e, "Webhook dispatcher pass failed; retrying");
            }

            if (claimed < Batch)
            {
                await _wake.WaitAsync(_options.PollInterval, stoppingToken).ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
            }
        }
    }

    private sealed record Due(Guid Id, string Tenant, string Event, string Body, int Attempt);

    // The tenants with due deliveries, the longest-waiting first: a plain read over every tenant. The claims then lock
    // and write within one tenant, so each names its tenant (a single-shard statement under Citus, docs/sharding.md).
    private const string TenantsWithDue = """
        SELECT tenant_id FROM webhook_deliveries
        WHERE status = 'Pending' AND next_attempt_at <= $1
        GROUP BY tenant_id ORDER BY min(next_attempt_at)
        """;

    // The claim moves the next attempt a lease ahead and counts the attempt, so a process that dies mid-send neither
    // loses the delivery nor retries it without end.
    private const string ClaimOfTenant = """
        WITH next AS (
            SELECT id FROM webhook_deliveries
            WHERE tenant_id = $1 AND status = 'Pending' AND next_attempt_at <= $2
            ORDER BY next_attempt_at LIMIT $3
            FOR UPDATE SKIP LOCKED)
        UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = $4
        FROM next WHERE d.tenant_id = $1 AND d.id = next.id
        RETURNING d.id, d.tenant_id, d.event, d.body, d.attempts
        """;

    private async Task<List<Due>> ClaimAsync(CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        await using var connection = await _sources.Application.OpenConnectionAsync(cancellationToken);
        var tenants = new List<string>();
        await using (var find = new NpgsqlCommand(TenantsWithDue, connection) { Parameters = { new() { Value = now } } })
        await using (var reader = await find.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                tenants.Add(reader.GetString(0));
            }
        }

        var due = new List<Due>();
        foreach (var tenant in tenants.TakeWhile(_ => due.Count < Batch))
        {
            await using var claim = new NpgsqlCommand(ClaimOfTenant, connection)
            {
                Parameters =
                {
                    new() { Value = tenant }, new() { Value = now }, new() { Value = Batch - due.Count },
                    new() { Value = now + _options.Timeout + _options.Timeout + TimeSpan.FromSeconds(30) },
                },
            };
            await using var reader = await claim.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                due.Add(new Due(reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetInt32(4)));
            }
        }

        return due;
    }

    private async ValueTask DeliverAsync(Due due, CancellationToken cancellationToken)
    {
        await using var db = _contexts.Create(due.Tenant);
        var webhook = await db.TenantWebhooks.AsNoTracking().FirstOrDefaultAsync(cancellationToken);
        var started = Stopwatch.GetTimestamp();
        int? status = null;
        string? error;
        if (webhook is null)
        {
            error = "The tenant has no webhook any more.";
        }
        else if (_secrets.Unprotect(due.Tenant, webhook.SecretCiphertext) is not { } secret)
        {
            error = "The webhook's secret cannot be decrypted with this server's key (Harness:Webhooks:SecretKeyPath); set the webhook again.";
        }
        else
        {
            (status, error) = await SendAsync(webhook.Url, secret, due, cancellationToken);
            CryptographicOperations.ZeroMemory(secret);
        }

        var delivered = status is >= 200 and < 300;
        var now = _time.GetUtcNow();
        var final = delivered ? WebhookDeliveryStatus.Delivered
            : webhook is null || due.Attempt >= _options.MaxAttempts ? WebhookDeliveryStatus.Failed
            : WebhookDeliveryStatus.Pending;
        db.WebhookAttempts.Add(new WebhookAttempt
        {
            DeliveryId = due.Id,
            Attempt = due.Attempt,
            TenantId = due.Tenant,
            At = now,
            StatusCode = status,
            Error = Cut(error),
            DurationMs = (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds,
        });
        await db.SaveChangesAsync(cancellationToken);
        var next = now + Backoff(due.Attempt);
        await db.WebhookDeliveries.Where(d => d.Id == due.Id).ExecuteUpdateAsync(d => d
            .SetProperty(x => x.Status, final)
            .SetProperty(x => x.LastStatusCode, status)
            .SetProperty(x => x.LastError, Cut(error))
            .SetProperty(x => x.NextAttemptAt, next)
            .SetProperty(x => x.DeliveredAt, delivered ? now : null), cancellationToken);
        if (!delivered)
        {
            _logger.LogWarning("Webhook delivery {Delivery} of {Tenant} attempt {Attempt} failed ({Status}): {Error}",
                due.Id, due.Tenant, due.Attempt, status, error);
        }
    }

    private async Task<(int? Status, string? Error)> SendAsync(string url, byte[] secret, Due due, CancellationToken cancellationToken)
    {
        var timestamp = _time.GetUtcNow().ToUnixTimeSeconds();
        using var request = new HttpRequestMessage(HttpMethod.Post, url)
        {
            Content = new StringContent(due.Body, Encoding.UTF8, "application/json"),
        };
        request.Headers.Add(EventHeader, due.Event);
        request.Headers.Add(DeliveryHeader, due.Id.ToString());
        request.Headers.Add(TimestampHeader, timestamp.ToString(CultureInfo.InvariantCulture));
        request.Headers.Add(SignatureHeader, Sign(secret, timestamp, due.Body));
        try
        {
            using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            var code = (int)response.StatusCode;
            return (code, code is >= 200 and < 300 ? null : $"The receiver answered {code} {response.ReasonPhrase}.");
        }
        catch (HttpRequestException e) when (AddressGuard.Refusal(e) is { } blocked)
        {
            return (null, blocked);
        }
        catch (HttpRequestException e)
        {
            return (null, $"The request failed: {e.Message}");
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return (null, $"No answer within {_options.Timeout.TotalSeconds} s.");
        }
    }

    private TimeSpan Backoff(int attempt)
    {
        var wait = _options.InitialBackoff * Math.Pow(2, Math.Min(attempt - 1, 30));
        return wait > _options.MaxBackoff ? _options.MaxBackoff : wait;
    }

    private static string? Cut(string? error) =>
        error is { Length: > WebhookAttemptConfiguration.MaxError } ? error[..WebhookAttemptConfiguration.MaxError] : error;

    public override void Dispose()
    {
        _client.Dispose();
        _wake.Dispose();
        base.Dispose();
    }
}
