using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
using HarnessServer.Data;
using HarnessServer.Http;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using NpgsqlTypes;

namespace HarnessServer.Audit;

/// <summary>
/// The tenants' append-only, hash-chained audit trails. Appends from any number of callers are group-committed by
/// one background writer: a batch locks the head rows of its tenants (sorted, <c>FOR UPDATE</c>, so two server
/// processes sharing a database stay linear), runs each unit of work in its own savepoint, inserts the events with
/// hashes computed here, moves the heads and commits once. A call completes only after that commit.
/// </summary>
internal sealed class AuditChain : IHostedService
{
    /// <summary>The most appends one transaction carries.</summary>
    public const int DefaultMaxBatchSize = 512;

    private const string InsertEvents = """
        INSERT INTO audit_events (tenant_id, seq, at, actor_id, actor_name, session_id, type, tool, decision, payload, payload_hash, prev_hash, hash)
        SELECT t, s, a, ai, an, si, ty, tl, d::json, p::json, ph, pv, h
        FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::text[],
                    $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
             AS u(t, s, a, ai, an, si, ty, tl, d, p, ph, pv, h)
        """;

    private readonly Channel<PendingAppend> _queue = Channel.CreateUnbounded<PendingAppend>(
        new UnboundedChannelOptions { SingleReader = true });
    private readonly NpgsqlDataSource _database;
    private readonly TimeProvider _time;
    private readonly ILogger<AuditChain> _logger;
    private readonly int _maxBatchSize;
    private readonly DatabaseFaults? _faults;
    private readonly HashSet<string> _knownHeads = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Head> _lastHeads = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _committedHeads = new(StringComparer.Ordinal);
    private readonly ArrayBufferWriter<byte> _scratch = new(1024);
    private Task? _loop;

    // The writer's own connection, kept between batches: handing a pooled connection back after every batch had
    // PostgreSQL run the pool's seven-statement reset once per batch (pg_stat_statements, bench/results/pipeline.md).
    // It is dropped after any failure and renewed after a minute, so a failover or a changed data source is followed.
    private static readonly TimeSpan ConnectionRenewal = TimeSpan.FromMinutes(1);
    private NpgsqlConnection? _connection;
    private long _connectionOpened;

    /// <param name="database">The application data source (role <c>harness_app</c>: it may insert events, never change them).</param>
    /// <param name="faults">Told when a batch fails because the database is unavailable, so the pools are cleared.</param>
    public AuditChain(NpgsqlDataSource database, TimeProvider time, ILogger<AuditChain> logger, int maxBatchSize = DefaultMaxBatchSize, DatabaseFaults? faults = null)
    {
        _faults = faults;
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatchSize, 1);
        _database = database;
        _time = time;
        _logger = logger;
        _maxBatchSize = maxBatchSize;
    }

    /// <summary>The last seq this process committed per tenant (for the head gauge; never trusted for appends).</summary>
    internal IEnumerable<KeyValuePair<string, long>> CommittedHeads => _committedHeads;

    /// <summary>Appends entries to the tenant's chain; completes when they are durably committed; returns their seqs.</summary>
    /// <exception cref="AuditUnavailableException">The events could not be committed; nothing was recorded.</exception>
    public Task<AuditReceipt> AppendAsync(string tenantId, IReadOnlyList<AuditEntry> entries, CancellationToken ct) =>
        AppendAsync(tenantId, entries, [], ct);

    /// <summary>
    /// Appends entries together with plain writes (<paramref name="commands"/>) that run in the same transaction, in
    /// the same round trip as the events: both commit or neither does. Such appends from concurrent callers are
    /// grouped like plain appends, so a batch of them costs the writer one round trip, not one per caller.
    /// </summary>
    /// <exception cref="AuditUnavailableException">The events or the writes could not be committed; nothing was.</exception>
    public async Task<AuditReceipt> AppendAsync(string tenantId, IReadOnlyList<AuditEntry> entries, IReadOnlyList<AuditCommand> commands, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(tenantId);
        CheckText(tenantId, "tenant");
        var prepared = Prepare(entries);
        CheckCommands(commands);
        var pending = new PendingAppend(tenantId, prepared, null, ct) { Commands = commands };
        var seqs = await EnqueueAsync(pending);
        return new AuditReceipt(seqs) { Answers = pending.Answers ?? [] };
    }

    /// <summary>
    /// Runs <paramref name="work"/> inside the same database transaction as the events it returns: both commit or
    /// neither does. An exception from <paramref name="work"/> rolls back its savepoint and reaches this caller only.
    /// </summary>
    /// <exception cref="AuditUnavailableException">The events could not be committed; the work left no trace.</exception>
    public async Task<AuditReceipt<T>> AppendAsync<T>(
        string tenantId,
        Func<AuditUnitOfWork, CancellationToken, Task<(T Result, IReadOnlyList<AuditEntry> Entries)>> work,
        CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(tenantId);
        ArgumentNullException.ThrowIfNull(work);
        CheckText(tenantId, "tenant");
        T result = default!;
        var seqs = await EnqueueAsync(new PendingAppend(tenantId, null, async (unit, token) =>
        {
            var (value, entries) = await work(unit, token);
            result = value;
            return Prepare(entries);
        }, ct));
        return new AuditReceipt<T>(result, seqs);
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        AuditMetrics.Track(this);
        _loop = Task.Factory.StartNew(RunAsync, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        return Task.CompletedTask;
    }

    /// <summary>Refuses new appends and commits those already queued.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _queue.Writer.TryComplete();
        if (_loop is not null)
        {
            await _loop.WaitAsync(cancellationToken);
        }

        await DropConnectionAsync();
        AuditMetrics.Untrack(this);
    }

    private async Task<IReadOnlyList<long>> EnqueueAsync(PendingAppend pending)
    {
        pending.CancellationToken.ThrowIfCancellationRequested();
        if (!_queue.Writer.TryWrite(pending))
        {
            throw new AuditUnavailableException("The audit writer is stopped; the action was not performed.");
        }

        try
        {
            return await pending.Completion.Task;
        }
        finally
        {
            AuditMetrics.AppendDuration.Record(Stopwatch.GetElapsedTime(pending.Enqueued).TotalMilliseconds);
        }
    }

    /// <summary>
    /// Everything an append can compute is computed here, on the caller's side of the queue, so that a value that
    /// cannot be recorded fails its own append and never the writer's batch of other callers' appends.
    /// </summary>
    private static PreparedEntry[] Prepare(IReadOnlyList<AuditEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        var prepared = new PreparedEntry[entries.Count];
        for (var i = 0; i < prepared.Length; i++)
        {
            var entry = entries[i] ?? throw new ArgumentException("An audit entry is null.", nameof(entries));
            Check(entry.Type, "Type", ColumnLimits.Identifier, required: true);
            Check(entry.Actor?.Id, "Actor.Id", ColumnLimits.Identifier, required: true);
            Check(entry.Actor?.Name, "Actor.Name", ColumnLimits.DisplayName, required: false);
            Check(entry.Tool, "Tool", ColumnLimits.Identifier, required: false);
            var decision = entry.Decision is null ? null : CanonicalJson.Serialize(entry.Decision);
            var payload = CanonicalJson.Serialize(entry.Payload);
            prepared[i] = new PreparedEntry(
                entry,
                decision,
                decision is null ? null : Encoding.UTF8.GetString(decision),
                Encoding.UTF8.GetString(payload),
                AuditHash.Hex(payload));
        }

        return prepared;
    }

    private static void Check(string? value, string name, int maxLength, bool required)
    {
        if (required && string.IsNullOrWhiteSpace(value))
        {
            throw new ArgumentException($"An audit entry needs a non-empty {name}.");
        }

        if (value is { Length: var length } && length > maxLength)
        {
            throw new ArgumentException($"An audit entry's {name} is longer than {maxLength} characters.");
        }

        CheckText(value, name);
    }

    private static void CheckText(string? value, string name)
    {
        if (StorableText.Problem(value) is { } problem)
        {
            throw new ArgumentException($"An audit entry's {name} cannot be stored: {problem}.");
        }
    }

    // A string the driver cannot encode (an unpaired surrogate) would fail the shared round trip before PostgreSQL
    // sees it, so it could not be told apart from the others' writes: it is refused here, to its caller alone.
    private static void CheckCommands(IReadOnlyList<AuditCommand> commands)
    {
        ArgumentNullException.ThrowIfNull(commands);
        foreach (var command in commands)
        {
            foreach (var value in command.Values)
            {
                switch (value is NpgsqlParameter parameter ? parameter.Value : value)
                {
                    case string text:
                        CheckText(text, "command parameter");
                        break;
                    case IEnumerable<string?> texts:
                        foreach (var text in texts)
                        {
                            CheckText(text, "command parameter");
                        }

                        break;
                }
            }
        }
    }

    private async Task RunAsync()
    {
        var batch = new List<PendingAppend>(_maxBatchSize);
        while (await _queue.Reader.WaitToReadAsync())
        {
            while (batch.Count < _maxBatchSize && _queue.Reader.TryRead(out var pending))
            {
                if (pending.CancellationToken.IsCancellationRequested)
                {
                    pending.Completion.TrySetCanceled(pending.CancellationToken);
                }
                else
                {
                    batch.Add(pending);
                }
            }

            if (batch.Count == 0)
            {
                continue;
            }

            try
            {
                await WriteBatchAsync(batch);
            }
            catch (Exception exception)
            {
                // A batch whose commit was cut off may have committed: its callers get an error, not a retry, so no
                // append is ever written twice (the next batch reads the heads afresh, see WriteBatchAsync).
                _faults?.Report(exception);
                _logger.LogError(exception, "An audit batch of {Count} appends failed; none of them was acknowledged", batch.Count);
                foreach (var pending in batch)
                {
                    pending.Completion.TrySetException(new AuditUnavailableException(
                        "The audit trail could not be written; the action was not performed. Retry later.", exception));
                }
            }

            batch.Clear();
        }
    }

    private async Task WriteBatchAsync(List<PendingAppend> batch)
    {
        AuditMetrics.BatchSize.Record(batch.Count);
        var connection = await ConnectionAsync();
        try
        {
            await WriteBatchAsync(connection, batch);
        }
        catch
        {
            // Whatever state the connection is in (broken, or a transaction left open), the next batch starts afresh.
            await DropConnectionAsync();
            throw;
        }
    }

    private async Task<NpgsqlConnection> ConnectionAsync()
    {
        if (_connection is { State: System.Data.ConnectionState.Open } held && Stopwatch.GetElapsedTime(_connectionOpened) < ConnectionRenewal)
        {
            return held;
        }

        await DropConnectionAsync();
        _connection = await _database.OpenConnectionAsync();
        _connectionOpened = Stopwatch.GetTimestamp();
        return _connection;
    }

    private async Task DropConnectionAsync()
    {
        if (_connection is { } held)
        {
            _connection = null;
            await held.DisposeAsync();
        }
    }

    private async Task WriteBatchAsync(NpgsqlConnection connection, List<PendingAppend> batch)
    {
        var tenants = batch.Select(p => p.TenantId).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        await EnsureHeadsAsync(connection, tenants);

        await using var transaction = await connection.BeginTransactionAsync();
        var at = AuditHash.ToMicroseconds(_time.GetUtcNow());
        var committed = new List<PendingAppend>(batch.Count);
        var plain = batch.Where(p => p.Work is null).ToList();
        var units = batch.Where(p => p.Work is not null).ToList();
        var headsMoved = false;
        Dictionary<string, Head> heads;
        if (units.Count == 0 && TryGuessHeads(tenants, out var guess))
        {
            (heads, headsMoved) = await InsertOnGuessedHeadsAsync(connection, transaction, tenants, plain, guess, at);
            if (headsMoved)
            {
                committed.AddRange(plain);
            }
            else
            {
                headsMoved = await InsertGroupAsync(connection, transaction, plain, heads, at, committed, moveHeads: true);
            }
        }
        else
        {
            // Plain appends first, all in one statement; then each unit of work in its own savepoint. Without units
            // of work the heads are final after the plain insert and move in the same round trip.
            heads = await LockHeadsAsync(connection, transaction, tenants);
            if (plain.Count > 0)
            {
                headsMoved = await InsertGroupAsync(connection, transaction, plain, heads, at, committed, moveHeads: units.Count == 0);
            }
        }

        foreach (var pending in units)
        {
            await RunUnitAsync(connection, transaction, pending, heads, at, committed);
        }

        if (committed.Count == 0)
        {
            await transaction.RollbackAsync();
            return;
        }

        if (!headsMoved)
        {
            await using var move = new NpgsqlBatch(connection, transaction) { BatchCommands = { MoveHeads(heads) } };
            await move.ExecuteNonQueryAsync();
        }

        try
        {
            await transaction.CommitAsync();
        }
        catch
        {
            // Whether it committed is unknown: the next batch of these tenants reads their heads afresh.
            foreach (var tenant in tenants)
            {
                _lastHeads.Remove(tenant);
            }

            throw;
        }

        foreach (var (tenant, head) in heads)
        {
            _committedHeads[tenant] = head.Seq;
            _lastHeads[tenant] = head with { Moved = false };
        }

        foreach (var pending in committed)
        {
            pending.Completion.TrySetResult(pending.Seqs!);
        }
    }

    // Head rows are created outside the batch transaction so that a batch only ever locks existing rows, in order.
    private async Task EnsureHeadsAsync(NpgsqlConnection connection, string[] tenants)
    {
        var missing = tenants.Where(t => !_knownHeads.Contains(t)).ToArray();
        if (missing.Length == 0)
        {
            return;
        }

        await using var command = new NpgsqlCommand(
            "INSERT INTO audit_heads (tenant_id, seq, hash) SELECT unnest($1::text[]), 0, $2 ON CONFLICT (tenant_id) DO NOTHING",
            connection);
        command.Parameters.Add(new NpgsqlParameter { Value = missing });
        command.Parameters.Add(new NpgsqlParameter { Value = AuditHash.Genesis });
        await command.ExecuteNonQueryAsync();
        _knownHeads.UnionWith(missing);
    }

    private static NpgsqlBatchCommand LockHeads(string[] tenants)
    {
        var command = new NpgsqlBatchCommand(
            """SELECT tenant_id, seq, hash FROM audit_heads WHERE tenant_id = ANY($1) ORDER BY tenant_id COLLATE "C" FOR UPDATE""");
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = tenants });
        return command;
    }

    private static async Task<Dictionary<string, Head>> ReadHeadsAsync(NpgsqlDataReader reader, int tenants)
    {
        var heads = new Dictionary<string, Head>(tenants, StringComparer.Ordinal);
        while (await reader.ReadAsync())
        {
            heads[reader.GetString(0)] = new Head(reader.GetInt64(1), reader.GetString(2), Moved: false);
        }

        return heads;
    }

    private static async Task<Dictionary<string, Head>> LockHeadsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string[] tenants)
    {
        await using var batch = new NpgsqlBatch(connection, transaction) { BatchCommands = { LockHeads(tenants) } };
        Dictionary<string, Head> heads;
        await using (var reader = await batch.ExecuteReaderAsync())
        {
            heads = await ReadHeadsAsync(reader, tenants.Length);
        }

        if (heads.Count != tenants.Length)
        {
            throw new InvalidOperationException("An audit head row is missing.");
        }

        return heads;
    }

    private bool TryGuessHeads(string[] tenants, out Dictionary<string, Head> guess)
    {
        guess = new Dictionary<string, Head>(tenants.Length, StringComparer.Ordinal);
        foreach (var tenant in tenants)
        {
            if (!_lastHeads.TryGetValue(tenant, out var head))
            {
                return false;
            }

            guess[tenant] = head;
        }

        return true;
    }

    /// <summary>
    /// One round trip instead of two when this process wrote the tenants' last events: the heads are locked and read
    /// in the same batch as an insert chained on the heads this process last committed. The guess is never trusted:
    /// when the heads read under the lock differ (another process appended) or the insert fails, everything after
    /// the savepoint is rolled back and the caller inserts again on the heads just read.
    /// </summary>
    /// <returns>The heads (moved when the guess held) and whether the guess held.</returns>
    private async Task<(Dictionary<string, Head> Heads, bool Held)> InsertOnGuessedHeadsAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string[] tenants, List<PendingAppend> plain,
        Dictionary<string, Head> guess, DateTimeOffset at)
    {
        var expected = new Dictionary<string, Head>(guess, StringComparer.Ordinal);
        var rows = new EventRows();
        plain.RemoveAll(pending => !TryAddRows(rows, pending, guess, at));

        await using var batch = new NpgsqlBatch(connection, transaction);
        batch.BatchCommands.Add(LockHeads(tenants));
        batch.BatchCommands.Add(new NpgsqlBatchCommand("SAVEPOINT audit_guess"));
        AddCommands(batch, plain);
        batch.BatchCommands.Add(rows.ToCommand());
        AddAnswering(batch, plain);
        batch.BatchCommands.Add(MoveHeads(guess));
        Dictionary<string, Head> actual;
        var failed = false;
        var results = new List<object?[]?>();
        await using (var reader = await batch.ExecuteReaderAsync())
        {
            actual = await ReadHeadsAsync(reader, tenants.Length);
            try
            {
                while (await reader.NextResultAsync())
                {
                    results.Add(await FirstRowAsync(reader));
                }
            }
            catch (PostgresException)
            {
                failed = true;
            }
        }

        if (actual.Count != tenants.Length)
        {
            throw new InvalidOperationException("An audit head row is missing.");
        }

        var held = !failed && expected.All(e => actual[e.Key] == e.Value);
        if (held)
        {
            Answer(plain, results);
            return (guess, true);
        }

        await ExecuteAsync(connection, transaction, "ROLLBACK TO SAVEPOINT audit_guess");
        return (actual, false);
    }

    /// <returns>True when the heads were moved in the same round trip (only with <paramref name="moveHeads"/>).</returns>
    private async Task<bool> InsertGroupAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, List<PendingAppend> group,
        Dictionary<string, Head> heads, DateTimeOffset at, List<PendingAppend> committed, bool moveHeads)
    {
        group.RemoveAll(pending => pending.Completion.Task.IsCompleted);
        var before = new Dictionary<string, Head>(heads, StringComparer.Ordinal);
        var rows = new EventRows();
        group.RemoveAll(pending => !TryAddRows(rows, pending, heads, at));
        if (group.Count == 0)
        {
            return false;
        }

        await using var batch = new NpgsqlBatch(connection, transaction);
        batch.BatchCommands.Add(new NpgsqlBatchCommand("SAVEPOINT audit_group"));
        AddCommands(batch, group);
        batch.BatchCommands.Add(rows.ToCommand());
        var answering = AddAnswering(batch, group);
        batch.BatchCommands.Add(new NpgsqlBatchCommand("RELEASE SAVEPOINT audit_group"));
        if (moveHeads)
        {
            batch.BatchCommands.Add(MoveHeads(heads));
        }

        try
        {
            if (answering)
            {
                var results = new List<object?[]?>();
                await using (var reader = await batch.ExecuteReaderAsync())
                {
                    do
                    {
                        results.Add(await FirstRowAsync(reader));
                    }
                    while (await reader.NextResultAsync());
                }

                Answer(group, results);
            }
            else
            {
                await batch.ExecuteNonQueryAsync();
            }

            committed.AddRange(group);
            return moveHeads;
        }
        catch (Exception exception)
        {
            await ExecuteAsync(connection, transaction, "ROLLBACK TO SAVEPOINT audit_group");
            Restore(heads, before);
            if (group.Count == 1)
            {
                _logger.LogError(exception, "Audit events of tenant {Tenant} were refused by the database", group[0].TenantId);
                group[0].Completion.TrySetException(Unavailable(exception));
                return false;
            }
        }

        // One append the database refuses must not take the others down: retry them one by one.
        foreach (var pending in group)
        {
            await InsertGroupAsync(connection, transaction, [pending], heads, at, committed, moveHeads: false);
        }

        return false;
    }

    private async Task RunUnitAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, PendingAppend pending,
        Dictionary<string, Head> heads, DateTimeOffset at, List<PendingAppend> committed)
    {
        await ExecuteAsync(connection, transaction, "SAVEPOINT audit_unit");
        PreparedEntry[] entries;
        var unit = new AuditUnitOfWork(pending.TenantId, connection, transaction, () => TenantDbContextFactory.Create(pending.TenantId, connection, transaction));
        try
        {
            entries = await pending.Work!(unit, pending.CancellationToken);
        }
        catch (Exception exception)
        {
            await ExecuteAsync(connection, transaction, "ROLLBACK TO SAVEPOINT audit_unit");
            pending.Completion.TrySetException(exception);
            return;
        }
        finally
        {
            await unit.DisposeAsync();
        }

        var notifications = unit.Notifications;
        var before = new Dictionary<string, Head>(heads, StringComparer.Ordinal);
        var rows = new EventRows();
        if (!TryAddRows(rows, pending, heads, at, entries))
        {
            await ExecuteAsync(connection, transaction, "ROLLBACK TO SAVEPOINT audit_unit");
            return;
        }

        await using var batch = new NpgsqlBatch(connection, transaction);
        batch.BatchCommands.Add(rows.ToCommand());
        foreach (var (channel, payload) in notifications)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT pg_notify($1, $2)") { Parameters = { new() { Value = channel }, new() { Value = payload } } });
        }

        batch.BatchCommands.Add(new NpgsqlBatchCommand("RELEASE SAVEPOINT audit_unit"));
        try
        {
            await batch.ExecuteNonQueryAsync();
            committed.Add(pending);
        }
        catch (Exception exception)
        {
            // Also reached when the work swallowed an error of its own and left the transaction aborted.
            await ExecuteAsync(connection, transaction, "ROLLBACK TO SAVEPOINT audit_unit");
            Restore(heads, before);
            _logger.LogError(exception, "Audit events of tenant {Tenant} were refused by the database", pending.TenantId);
            pending.Completion.TrySetException(Unavailable(exception));
        }
    }

    /// <summary>
    /// Chains one append's entries onto the heads; an entry whose event cannot be hashed fails that append alone
    /// (its rows are not added and the heads do not move).
    /// </summary>
    private bool TryAddRows(EventRows rows, PendingAppend pending, Dictionary<string, Head> heads, DateTimeOffset at, PreparedEntry[]? entries = null)
    {
        try
        {
            pending.Seqs = rows.Add(pending.TenantId, entries ?? pending.Entries!, heads, at, _scratch);
            return true;
        }
        catch (Exception exception)
        {
            _logger.LogError(exception, "An audit event of tenant {Tenant} could not be chained; only its append fails", pending.TenantId);
            pending.Completion.TrySetException(Unavailable(exception));
            return false;
        }
    }

    private static AuditUnavailableException Unavailable(Exception exception) =>
        new("The audit trail refused the events; the action was not performed.", exception);

    private static NpgsqlBatchCommand MoveHeads(Dictionary<string, Head> heads)
    {
        var moved = heads.Where(h => h.Value.Moved).ToArray();
        var command = new NpgsqlBatchCommand("""
            UPDATE audit_heads h SET seq = u.seq, hash = u.hash
            FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(tenant_id, seq, hash)
            WHERE h.tenant_id = u.tenant_id
            """);
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = moved.Select(h => h.Key).ToArray() });
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = moved.Select(h => h.Value.Seq).ToArray() });
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = moved.Select(h => h.Value.Hash).ToArray() });
        return command;
    }

    private static void Restore(Dictionary<string, Head> heads, Dictionary<string, Head> before)
    {
        foreach (var (tenant, head) in before)
        {
            heads[tenant] = head;
        }
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync();
    }

    private readonly record struct Head(long Seq, string Hash, bool Moved);

    private sealed record PreparedEntry(AuditEntry Entry, byte[]? Decision, string? DecisionJson, string PayloadJson, string PayloadHash);

    private sealed class PendingAppend(
        string tenantId,
        PreparedEntry[]? entries,
        Func<AuditUnitOfWork, CancellationToken, Task<PreparedEntry[]>>? work,
        CancellationToken cancellationToken)
    {
        public string TenantId { get; } = tenantId;
        public PreparedEntry[]? Entries { get; } = entries;
        public Func<AuditUnitOfWork, CancellationToken, Task<PreparedEntry[]>>? Work { get; } = work;
        public CancellationToken CancellationToken { get; } = cancellationToken;
        public long Enqueued { get; } = Stopwatch.GetTimestamp();
        public TaskCompletionSource<IReadOnlyList<long>> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public long[]? Seqs { get; set; }

        /// <summary>Writes that commit with these events (only for plain appends).</summary>
        public IReadOnlyList<AuditCommand> Commands { get; init; } = [];

        /// <summary>What the answering commands among <see cref="Commands"/> answered, once committed.</summary>
        public object?[]?[]? Answers { get; set; }
    }

    private static void AddCommands(NpgsqlBatch batch, IEnumerable<PendingAppend> appends)
    {
        foreach (var command in appends.SelectMany(p => p.Commands).Where(c => !c.Answers))
        {
            batch.BatchCommands.Add(command.ToBatchCommand());
        }
    }

    /// <returns>Whether any command answers: the batch's results must be read then.</returns>
    private static bool AddAnswering(NpgsqlBatch batch, IEnumerable<PendingAppend> appends)
    {
        var any = false;
        foreach (var command in appends.SelectMany(p => p.Commands).Where(c => c.Answers))
        {
            batch.BatchCommands.Add(command.ToBatchCommand());
            any = true;
        }

        return any;
    }

    // The driver yields a result set only for statements that return rows (pg_notify's SELECTs too), so results are
    // matched from the end: the answering commands are the batch's last statements that return rows.
    private static void Answer(List<PendingAppend> appends, List<object?[]?> results)
    {
        var next = results.Count - appends.Sum(p => p.Commands.Count(c => c.Answers));
        foreach (var pending in appends)
        {
            var count = pending.Commands.Count(c => c.Answers);
            if (count > 0)
            {
                pending.Answers = results.GetRange(next, count).ToArray();
                next += count;
            }
        }
    }

    private static async Task<object?[]?> FirstRowAsync(NpgsqlDataReader reader)
    {
        if (!await reader.ReadAsync())
        {
            return null;
        }

        var row = new object[reader.FieldCount];
        reader.GetValues(row);
        return row;
    }

    /// <summary>The columns of one multi-row insert, with seqs and hashes assigned from the locked heads.</summary>
    private sealed class EventRows
    {
        private readonly List<string> _tenant = [];
        private readonly List<long> _seq = [];
        private readonly List<DateTimeOffset> _at = [];
        private readonly List<string> _actorId = [];
        private readonly List<string> _actorName = [];
        private readonly List<Guid?> _session = [];
        private readonly List<string> _type = [];
        private readonly List<string?> _tool = [];
        private readonly List<string?> _decision = [];
        private readonly List<string> _payload = [];
        private readonly List<string> _payloadHash = [];
        private readonly List<string> _prevHash = [];
        private readonly List<string> _hash = [];

        public long[] Add(string tenant, PreparedEntry[] entries, Dictionary<string, Head> heads, DateTimeOffset at, ArrayBufferWriter<byte> scratch)
        {
            var atText = AuditHash.FormatAt(at);
            var head = heads[tenant];
            var seqs = new long[entries.Length];
            // Every hash first, then the rows: an entry that fails to hash leaves these rows and the heads as they were.
            var hashes = new string[entries.Length];
            for (var i = 0; i < entries.Length; i++)
            {
                var e = entries[i];
                var fields = new AuditEventFields(head.Seq + 1 + i, tenant, atText, e.Entry.Actor.Id, e.Entry.Actor.Name ?? e.Entry.Actor.Id,
                    e.Entry.SessionId, e.Entry.Type, e.Entry.Tool, e.Decision, e.PayloadHash, i == 0 ? head.Hash : hashes[i - 1]);
                hashes[i] = AuditHash.Compute(fields, scratch);
            }

            for (var i = 0; i < entries.Length; i++)
            {
                var e = entries[i];
                var seq = head.Seq + 1;
                var actorName = e.Entry.Actor.Name ?? e.Entry.Actor.Id;
                var hash = hashes[i];
                _tenant.Add(tenant);
                _seq.Add(seq);
                _at.Add(at);
                _actorId.Add(e.Entry.Actor.Id);
                _actorName.Add(actorName);
                _session.Add(e.Entry.SessionId);
                _type.Add(e.Entry.Type);
                _tool.Add(e.Entry.Tool);
                _decision.Add(e.DecisionJson);
                _payload.Add(e.PayloadJson);
                _payloadHash.Add(e.PayloadHash);
                _prevHash.Add(head.Hash);
                _hash.Add(hash);
                seqs[i] = seq;
                head = new Head(seq, hash, Moved: true);
            }

            heads[tenant] = head;
            return seqs;
        }

        public NpgsqlBatchCommand ToCommand()
        {
            var command = new NpgsqlBatchCommand(InsertEvents);
            command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = _tenant.ToArray() });
            command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = _seq.ToArray() });
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]> { TypedValue = _at.ToArray() });
            command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = _actorId.ToArray() });
            command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = _actorName.ToArray() });
            command.Parameters.Add(new NpgsqlParameter<Guid?[]> { TypedValue = _session.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid });
            command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = _type.ToArray() });
            command.Parameters.Add(new NpgsqlParameter<string?[]> { TypedValue = _tool.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter<string?[]> { TypedValue = _decision.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = _payload.ToArray() });
            command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = _payloadHash.ToArray() });
            command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = _prevHash.ToArray() });
            command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = _hash.ToArray() });
            return command;
        }
    }
}
