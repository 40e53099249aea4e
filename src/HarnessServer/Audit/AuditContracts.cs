using System.Text.Json.Nodes;
using HarnessServer.Data;
using HarnessServer.Errors;
using Npgsql;

namespace HarnessServer.Audit;

/// <summary>Who acted: the user's id and display name as their token gave them.</summary>
internal sealed record AuditActor(string Id, string Name);

/// <summary>
/// One event to append. <paramref name="Decision"/> is the policy decision (<c>{ effect, level, source, reason }</c>)
/// when there is one. <paramref name="Payload"/> is kept beside the chain: only its hash is chained, so it can be
/// redacted later without breaking the chain. Admin changes put <c>{ before, after }</c> versions in the payload.
/// </summary>
internal sealed record AuditEntry(
    string Type,
    AuditActor Actor,
    Guid? SessionId = null,
    string? Tool = null,
    JsonObject? Decision = null,
    JsonObject? Payload = null);

/// <summary>The sequence numbers the appended entries got, in the order they were given.</summary>
internal record AuditReceipt(IReadOnlyList<long> Seqs)
{
    /// <summary>The sequence number of the last entry (0 when there were none).</summary>
    public long LastSeq => Seqs.Count == 0 ? 0 : Seqs[^1];

    /// <summary>
    /// The first row of each of the append's <see cref="AuditCommand.Answers"/> commands, in their order (null when
    /// one answered no row).
    /// </summary>
    public IReadOnlyList<object?[]?> Answers { get; init; } = [];
}

/// <summary>The result of a unit of work together with the sequence numbers of the events committed with it.</summary>
internal sealed record AuditReceipt<T>(T Result, IReadOnlyList<long> Seqs) : AuditReceipt(Seqs);

/// <summary>
/// The database transaction an audited unit of work runs in. Everything done through <see cref="Connection"/>,
/// <see cref="Transaction"/> or <see cref="Db"/> commits together with the unit's events, or not at all. The work must
/// not commit or roll back the transaction itself, and should be short: units of one batch run one after another.
/// </summary>
internal sealed class AuditUnitOfWork
{
    private readonly Func<HarnessDbContext> _createDb;
    private HarnessDbContext? _db;

    internal AuditUnitOfWork(string tenantId, NpgsqlConnection connection, NpgsqlTransaction transaction, Func<HarnessDbContext> createDb)
    {
        TenantId = tenantId;
        Connection = connection;
        Transaction = transaction;
        _createDb = createDb;
    }

    public string TenantId { get; }
    public NpgsqlConnection Connection { get; }
    public NpgsqlTransaction Transaction { get; }

    /// <summary>A DbContext bound to <see cref="TenantId"/> over this connection and transaction, made on first use.</summary>
    public HarnessDbContext Db => _db ??= _createDb();

    /// <summary>Notifications (<c>pg_notify</c> channel and payload) sent with the unit's events, delivered on commit.</summary>
    internal List<(string Channel, string Payload)> Notifications { get; } = [];

    /// <summary>
    /// Queues a notification to go out in the same round trip as the unit's audit events: it is delivered to
    /// listeners only if they commit.
    /// </summary>
    public void Notify(string channel, string payload) => Notifications.Add((channel, payload));

    /// <summary>Tells every server process, on commit, that a tenant's <paramref name="kind"/> of data changed (<see cref="ChangeFeed"/>).</summary>
    public void NotifyChange(string kind, string key) => Notify(ChangeFeed.Channel, ChangeFeed.Payload(kind, key));

    internal ValueTask DisposeAsync() => _db?.DisposeAsync() ?? ValueTask.CompletedTask;
}

/// <summary>The audit event could not be made durable, so the action it records did not happen (fail closed).</summary>
internal sealed class AuditUnavailableException(string detail, Exception? inner = null)
    : HarnessError(ErrorKind.Unavailable, ProblemCode, detail, "Audit unavailable")
{
    public const string ProblemCode = "audit_unavailable";

    public Exception? Cause { get; } = inner;
}

/// <summary>
/// A plain write (SQL with positional parameters) that commits together with audit events. Values are bound as
/// given; pass an <see cref="NpgsqlParameter"/> to fix a type (jsonb, a typed null).
/// </summary>
internal sealed record AuditCommand(string Sql, params object?[] Values)
{
    /// <summary>
    /// The command returns rows (a <c>SELECT</c>, or <c>RETURNING</c>), and its caller reads the first from
    /// <see cref="AuditReceipt.Answers"/>. Answering commands run after every other write of the batch and its
    /// events, still in their append's savepoint.
    /// </summary>
    public bool Answers { get; init; }

    public static AuditCommand Notify(string channel, string payload) => new("SELECT pg_notify($1, $2)", channel, payload);

    /// <summary>The <see cref="ChangeFeed"/> notice of a change, as a write that commits with an audit append.</summary>
    public static AuditCommand NotifyChange(string kind, string key) => Notify(ChangeFeed.Channel, ChangeFeed.Payload(kind, key));

    internal NpgsqlBatchCommand ToBatchCommand()
    {
        var command = new NpgsqlBatchCommand(Sql);
        foreach (var value in Values)
        {
            // A parameter object belongs to one command; copy it so a retried group can bind it again.
            command.Parameters.Add(value is NpgsqlParameter p ? p.Clone() : new NpgsqlParameter { Value = value ?? DBNull.Value });
        }

        return command;
    }
}
