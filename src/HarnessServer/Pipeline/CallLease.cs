using HarnessServer.Audit;
using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Pipeline;

/// <summary>
/// The execution lease of a session (or of a call outside one): which replica runs its current call, until when, and
/// the fencing token of that holding. The token only grows per row, and the call being run carries it
/// (<c>tool_calls.lease_token</c>): every write that finishes the call names it, so a holder whose lease ran out and
/// whose call another replica recorded as interrupted cannot record it a second time.
/// </summary>
internal sealed class CallLease : ITenantOwned
{
    public required string TenantId { get; set; }

    /// <summary>The session's id, or the call's own for a call outside a session (as <see cref="SessionGate.LockKey"/>).</summary>
    public Guid ScopeId { get; init; }

    /// <summary>The call that holds it; null once released.</summary>
    public Guid? CallId { get; set; }
    public required string Holder { get; set; }
    public long Token { get; set; }

    /// <summary>In the database's clock, so replicas whose clocks differ agree on it.</summary>
    public DateTimeOffset ExpiresAt { get; set; }
}

internal sealed class CallLeaseConfiguration : IEntityTypeConfiguration<CallLease>
{
    public void Configure(EntityTypeBuilder<CallLease> builder)
    {
        builder.ToTable("call_leases");
        builder.HasKey(l => new { l.TenantId, l.ScopeId });
        builder.Property(l => l.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(l => l.Holder).HasMaxLength(ColumnLimits.Identifier);
        builder.HasOne<Tenant>().WithMany().HasForeignKey(l => l.TenantId);
    }
}

/// <summary>
/// Takes, renews and gives up execution leases. The session's advisory lock (<see cref="SessionGate"/>) orders the
/// calls and is what a waiting call blocks on; the lease is what survives when the lock cannot be trusted (a primary
/// switch forgets every advisory lock, a partitioned replica may not notice its lock's connection is gone): a call runs
/// only while its replica holds the session's lease, and stops when a renewal fails past the lease's end.
/// </summary>
internal sealed class CallLeases(DatabaseSources sources, IOptions<RecoveryOptions> options, ILogger<CallLeases> logger)
{
    /// <summary>This replica, as written in the leases it holds (host, process and a per-start nonce).</summary>
    public static readonly string Holder = HolderName($"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid():N}");

    // Taken when free, released or expired; the call is stamped with the token in the same statement, and only while
    // it is still running (a sweeper may have recorded it interrupted between its commit and this).
    private const string Acquire = """
        WITH lease AS (
            INSERT INTO call_leases AS l (tenant_id, scope_id, call_id, holder, token, expires_at)
            VALUES ($1, $2, $3, $4, 1, now() + $5)
            ON CONFLICT (tenant_id, scope_id) DO UPDATE
                SET call_id = excluded.call_id, holder = excluded.holder, token = l.token + 1, expires_at = excluded.expires_at
                WHERE l.call_id IS NULL OR l.expires_at < now()
            RETURNING token),
        stamped AS (
            UPDATE tool_calls c SET lease_token = lease.token FROM lease
            WHERE c.tenant_id = $1 AND c.id = $3 AND c.status = 'Running'
            RETURNING c.id)
        SELECT (SELECT token FROM lease), EXISTS (SELECT 1 FROM stamped)
        """;

    private const string Renew = """
        UPDATE call_leases SET expires_at = now() + $4
        WHERE tenant_id = $1 AND scope_id = $2 AND token = $3 AND call_id IS NOT NULL AND expires_at >= now()
        """;

    internal const string Release = """
        UPDATE call_leases SET call_id = NULL, expires_at = now() WHERE tenant_id = $1 AND scope_id = $2 AND token = $3
        """;

    /// <summary>
    /// Takes the lease of the call's scope for it, waiting (at most one lease duration past a holder's last renewal)
    /// while another replica holds it. Null when the call is no longer running: it must not run.
    /// </summary>
    public async Task<Holding?> AcquireAsync(string tenant, Guid scope, Guid call, CancellationToken cancellationToken)
    {
        var duration = options.Value.LeaseDuration;
        while (true)
        {
            var sent = DateTime.UtcNow;
            await using (var command = sources.Application.CreateCommand(Acquire))
            {
                command.Parameters.Add(new() { Value = tenant });
                command.Parameters.Add(new() { Value = scope });
                command.Parameters.Add(new() { Value = call });
                command.Parameters.Add(new() { Value = Holder });
                command.Parameters.Add(new() { Value = duration });
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                await reader.ReadAsync(cancellationToken);
                if (!reader.IsDBNull(0))
                {
                    var token = reader.GetInt64(0);
                    var holding = new Holding(this, tenant, scope, token, duration);
                    if (reader.GetBoolean(1))
                    {
                        holding.StartRenewing(sent);
                        return holding;
                    }

                    await reader.DisposeAsync();
                    await holding.ReleaseAsync();
                    return null;
                }
            }

            // Another replica holds the session's lease although this one holds its lock: the lock was lost with a
            // primary switch, or the holder is cut off. It ends its call, or its lease runs out.
            logger.LogInformation("The lease of {Scope} is held by another replica; call {Call} waits for it", scope, call);
            await Task.Delay(options.Value.LeaseRetryInterval, cancellationToken);
        }
    }

    /// <summary>
    /// The acquisition as a write that commits with a new call's decision (after its row, in the audit writer's
    /// batch), so an allowed call takes its lease without a round trip and a commit of its own. Read its answer with
    /// <see cref="TakenAsync"/>.
    /// </summary>
    public AuditCommand AcquireWithDecision(string tenant, Guid scope, Guid call) =>
        new(Acquire, tenant, scope, call, Holder, options.Value.LeaseDuration) { Answers = true };

    /// <summary>
    /// The lease <see cref="AcquireWithDecision"/> took, renewed from now on (<paramref name="sent"/>: when its append
    /// was handed to the writer); null when another replica held it, and then <see cref="AcquireAsync"/> waits for it.
    /// </summary>
    public async Task<Holding?> TakenAsync(string tenant, Guid scope, object?[]? answer, DateTime sent)
    {
        if (answer is not [long token, bool stamped])
        {
            return null;
        }

        var holding = new Holding(this, tenant, scope, token, options.Value.LeaseDuration);
        if (!stamped)
        {
            // Not for a call inserted running in the same transaction; should it happen, the call is not left holding
            // a lease, and AcquireAsync finds it is no longer running.
            await holding.ReleaseAsync();
            return null;
        }

        holding.StartRenewing(sent);
        return holding;
    }

    private ILogger Log => logger;

    private static string HolderName(string name) => name.Length > ColumnLimits.Identifier ? name[^ColumnLimits.Identifier..] : name;

    private async Task<bool> RenewAsync(string tenant, Guid scope, long token, TimeSpan duration, CancellationToken cancellationToken)
    {
        await using var command = sources.Application.CreateCommand(Renew);
        command.Parameters.Add(new() { Value = tenant });
        command.Parameters.Add(new() { Value = scope });
        command.Parameters.Add(new() { Value = token });
        command.Parameters.Add(new() { Value = duration });
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    private async Task ReleaseAsync(string tenant, Guid scope, long token)
    {
        await using var command = sources.Application.CreateCommand(Release);
        command.Parameters.Add(new() { Value = tenant });
        command.Parameters.Add(new() { Value = scope });
        command.Parameters.Add(new() { Value = token });
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>A lease held by this replica: renewed every third of its duration until disposed.</summary>
    public sealed class Holding : IAsyncDisposable
    {
        private readonly CallLeases _leases;
        private readonly string _tenant;
        private readonly TimeSpan _duration;
        private readonly CancellationTokenSource _lost = new();
        private readonly CancellationTokenSource _stop = new();
        private Task? _renewing;
        private int _released;

        internal Holding(CallLeases leases, string tenant, Guid scope, long token, TimeSpan duration)
        {
            _leases = leases;
            _tenant = tenant;
            Scope = scope;
            Token = token;
            _duration = duration;
        }

        public Guid Scope { get; }

        /// <summary>The fencing token: the call's finishing write must name it.</summary>
        public long Token { get; }

        /// <summary>Cancelled when the lease could not be renewed before it ran out: the call must stop.</summary>
        public CancellationToken Lost => _lost.Token;

        /// <summary>Set when the finishing write gave the lease up in its own transaction.</summary>
        public void MarkReleased() => Interlocked.Exchange(ref _released, 1);

        internal void StartRenewing(DateTime sent) => _renewing = Task.Run(() => RenewPeriodicallyAsync(sent, _stop.Token), CancellationToken.None);

        private async Task RenewPeriodicallyAsync(DateTime acquired, CancellationToken stop)
        {
            // Measured from before each renewal was sent, so this replica gives up no later than the database expires it.
            var heldUntil = acquired + _duration;
            try
            {
                while (true)
                {
                    await Task.Delay(_duration / 3, stop);
                    var sent = DateTime.UtcNow;
                    try
                    {
                        if (!await _leases.RenewAsync(_tenant, Scope, Token, _duration, stop))
                        {
                            _leases.Log.LogWarning("The lease of {Scope} (token {Token}) ran out before it was renewed; its call stops", Scope, Token);
                            await _lost.CancelAsync();
                            return;
                        }

                        heldUntil = sent + _duration;
                    }
                    catch (Exception e) when (e is NpgsqlException or TimeoutException && !stop.IsCancellationRequested)
                    {
                        if (DateTime.UtcNow >= heldUntil)
                        {
                            _leases.Log.LogWarning(e, "The lease of {Scope} (token {Token}) could not be renewed before it ran out; its call stops", Scope, Token);
                            await _lost.CancelAsync();
                            return;
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
        }

        internal async Task ReleaseAsync()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                try
                {
                    await _leases.ReleaseAsync(_tenant, Scope, Token);
                }
                catch (Exception e) when (e is NpgsqlException or TimeoutException)
                {
                    // It runs out on its own; the next call of the session waits for that at most.
                    _leases.Log.LogWarning(e, "Releasing the lease of {Scope} failed; it expires in at most {Duration}", Scope, _duration);
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            if (_renewing is not null)
            {
                await _renewing;
            }

            await ReleaseAsync();
            _stop.Dispose();
            _lost.Dispose();
        }
    }
}
