using HarnessServer.Http;
using Npgsql;

namespace HarnessServer.Data;

/// <summary>
/// Tells every server process when a tenant's policies or tool registry changed, through PostgreSQL
/// <c>LISTEN/NOTIFY</c>: writers queue a notice with their audited unit of work (<c>AuditUnitOfWork.NotifyChange</c>) (delivered on commit), and
/// caches subscribe to <see cref="Changed"/>. If the listening connection drops, every cache is cleared and the feed
/// listens again on a new connection (after a failover, on the new primary). A connection that goes silent without
/// breaking (a primary lost without a reset) is found by a <c>SELECT 1</c> every <see cref="Heartbeat"/>.
/// </summary>
internal sealed class ChangeFeed(DatabaseSources sources, ILogger<ChangeFeed> logger, DatabaseFaults? faults = null) : BackgroundService
{
    /// <summary>How long the listening connection may be silent before it is checked.</summary>
    public static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(5);

    public const string Channel = "harness_changes";

    /// <summary>The kind of a change whose scope is unknown: every cache forgets everything.</summary>
    public const string AllKinds = "*";

    /// <summary>Raised with (kind, tenant); (kind, null) means "forget everything of this kind".</summary>
    public event Action<string, string?>? Changed;

    /// <summary>The notification payload of a change; writers send it on <see cref="Channel"/> with their audited unit of work.</summary>
    public static string Payload(string kind, string key) => $"{kind}:{key}";

    /// <summary>Raises a change locally, for the process that made it (its own notification arrives too).</summary>
    public void Publish(string kind, string? tenant) => Changed?.Invoke(kind, tenant);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await sources.Application.OpenConnectionAsync(stoppingToken);
                connection.Notification += (_, e) =>
                {
                    var separator = e.Payload.IndexOf(':', StringComparison.Ordinal);
                    if (separator > 0)
                    {
                        Publish(e.Payload[..separator], e.Payload[(separator + 1)..]);
                    }
                };
                await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
                {
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                }

                // Whatever changed while we were not listening is unknown: start clean.
                Publish(AllKinds, null);
                while (!stoppingToken.IsCancellationRequested)
                {
                    if (!await connection.WaitAsync(Heartbeat, stoppingToken))
                    {
                        await using var ping = new NpgsqlCommand("SELECT 1", connection) { CommandTimeout = (int)Heartbeat.TotalSeconds };
                        await ping.ExecuteScalarAsync(stoppingToken);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is NpgsqlException or System.Net.Sockets.SocketException or IOException)
            {
                logger.LogWarning(e, "Change feed connection lost; caches cleared, reconnecting");
                faults?.Report(e);
                Publish(AllKinds, null);
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
            }
        }
    }
}
