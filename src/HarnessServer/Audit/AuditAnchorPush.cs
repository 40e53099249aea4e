using System.Diagnostics.Metrics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Threading.Channels;
using HarnessServer.Observability;
using Npgsql;

namespace HarnessServer.Audit;

/// <summary>
/// Anchors the chains at a receiver the operator runs elsewhere: every new signed checkpoint is POSTed as JSON (the
/// anchor file's line) to <c>Harness:Audit:AnchorUrl</c>, with <c>Authorization: Bearer</c> <c>AnchorToken</c> when
/// one is set. A failed push is retried with backoff (1 s doubling to 5 min) until it is accepted (any 2xx), in
/// order; at start each tenant's newest checkpoint is pushed again, so a push that was queued when the server
/// stopped is not lost. Receivers must therefore accept a checkpoint they already hold (it is keyed by tenant and
/// seq, and signed, so a receiver can verify it with the public key at <c>/v1/audit/public-key</c>).
/// </summary>
internal sealed class AuditAnchorPush(
    HttpClient http, Uri url, string? token, NpgsqlDataSource database, TimeProvider time, ILogger<AuditAnchorPush> logger) : BackgroundService
{
    public const string HttpClientName = "audit-anchor";

    private static readonly Counter<long> Pushed =
        HarnessTelemetry.Meter.CreateCounter<long>("harness.audit.anchor.pushed", "{checkpoint}", "Signed checkpoints the anchor receiver accepted.");

    private static readonly Counter<long> Failed =
        HarnessTelemetry.Meter.CreateCounter<long>("harness.audit.anchor.failures", "{attempt}", "Pushes of a checkpoint to the anchor receiver that failed (each is retried).");

    private static readonly TimeSpan FirstRetry = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan LastRetry = TimeSpan.FromMinutes(5);

    // Checkpoints are made at most once per tenant and interval: a bound this large is never reached while the
    // receiver answers, and while it does not, dropping the oldest keeps the newest (which covers the older ones).
    private readonly Channel<AuditCheckpoint> _queue = Channel.CreateBounded<AuditCheckpoint>(
        new BoundedChannelOptions(10_000) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });

    public void Enqueue(AuditCheckpoint checkpoint) => _queue.Writer.TryWrite(checkpoint);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            foreach (var newest in await NewestWhenReachableAsync(stoppingToken))
            {
                await PushAsync(newest, stoppingToken);
            }

            await foreach (var checkpoint in _queue.Reader.ReadAllAsync(stoppingToken))
            {
                await PushAsync(checkpoint, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: the newest checkpoints are pushed again at the next start.
        }
    }

    private async Task PushAsync(AuditCheckpoint checkpoint, CancellationToken ct)
    {
        for (var delay = FirstRetry; ; delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, LastRetry.Ticks)))
        {
            string failure;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = JsonContent.Create(checkpoint, options: AuditAnchorFile.Json) };
                if (!string.IsNullOrEmpty(token))
                {
                    request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
                }

                using var response = await http.SendAsync(request, ct);
                if (response.IsSuccessStatusCode)
                {
                    Pushed.Add(1);
                    return;
                }

                failure = $"HTTP {(int)response.StatusCode}";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
            {
                failure = e.Message;
            }

            Failed.Add(1);
            logger.LogWarning("Pushing the audit checkpoint of tenant {Tenant} at seq {Seq} to the anchor receiver failed ({Failure}); retrying in {Delay}.",
                checkpoint.Tenant, checkpoint.Seq, failure, delay);
            await Task.Delay(delay, time, ct);
        }
    }

    // A background service that throws stops the host: a database that is down (or failing over) when the server
    // starts only delays the re-push of the newest checkpoints, with the same backoff as a refused push.
    private async Task<IReadOnlyList<AuditCheckpoint>> NewestWhenReachableAsync(CancellationToken ct)
    {
        for (var delay = FirstRetry; ; delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, LastRetry.Ticks)))
        {
            try
            {
                return await NewestPerTenantAsync(ct);
            }
            catch (NpgsqlException e) when (!ct.IsCancellationRequested)
            {
                logger.LogWarning("Reading the newest audit checkpoints to push again failed ({Failure}); retrying in {Delay}.", e.Message, delay);
                await Task.Delay(delay, time, ct);
            }
        }
    }

    private async Task<IReadOnlyList<AuditCheckpoint>> NewestPerTenantAsync(CancellationToken ct)
    {
        await using var command = database.CreateCommand("""
            SELECT DISTINCT ON (tenant_id) tenant_id, seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY tenant_id, seq DESC
            """);
        var newest = new List<AuditCheckpoint>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            newest.Add(AuditCheckpoints.FromRow(reader));
        }

        return newest;
    }
}
