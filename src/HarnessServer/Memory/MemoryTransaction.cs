using HarnessServer.Data;
using Npgsql;
using NpgsqlTypes;

namespace HarnessServer.Memory;

/// <summary>
/// A transaction that runs as <c>harness_app</c> with <c>harness.tenant_id</c> set to one tenant, the key of
/// memory_items' row-level security. Both are transaction-local, so nothing carries over to the pooled connection.
/// </summary>
internal sealed class MemoryTransaction : IAsyncDisposable
{
    private readonly bool _owned;

    private MemoryTransaction(NpgsqlConnection connection, NpgsqlTransaction transaction, bool owned = true)
    {
        Connection = connection;
        Transaction = transaction;
        _owned = owned;
    }

    /// <summary>
    /// Binds an audited unit of work's transaction (which already runs as <c>harness_app</c>) to the tenant, so a
    /// memory write commits together with its audit event, or neither does.
    /// </summary>
    public static async Task<MemoryTransaction> BindAsync(Audit.AuditUnitOfWork unit, CancellationToken cancellationToken)
    {
        await using var bind = new NpgsqlBatch(unit.Connection, unit.Transaction)
        {
            BatchCommands = { Command("SELECT set_config('harness.tenant_id', $1, true)", Text(unit.TenantId)) },
        };
        await bind.ExecuteNonQueryAsync(cancellationToken);
        return new MemoryTransaction(unit.Connection, unit.Transaction, owned: false);
    }

    public NpgsqlConnection Connection { get; }
    public NpgsqlTransaction Transaction { get; }

    /// <remarks>
    /// The role is set here again, not only when the connection opens, because a pooled connection's reset
    /// (DISCARD ALL) returns it to the login role, which may bypass row-level security.
    /// </remarks>
    public static async Task<MemoryTransaction> BeginAsync(NpgsqlDataSource source, string tenantId, CancellationToken cancellationToken)
    {
        var connection = await source.OpenConnectionAsync(cancellationToken);
        try
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken);
            await using var batch = new NpgsqlBatch(connection, transaction)
            {
                BatchCommands =
                {
                    new NpgsqlBatchCommand($"SET LOCAL ROLE {DataExtensions.ApplicationRole}"),
                    Command("SELECT set_config('harness.tenant_id', $1, true)", Text(tenantId)),
                },
            };
            await batch.ExecuteNonQueryAsync(cancellationToken);
            return new MemoryTransaction(connection, transaction);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public NpgsqlBatch Batch(params NpgsqlBatchCommand[] commands)
    {
        var batch = new NpgsqlBatch(Connection, Transaction);
        foreach (var command in commands)
        {
            batch.BatchCommands.Add(command);
        }

        return batch;
    }

    public Task CommitAsync(CancellationToken cancellationToken) => Transaction.CommitAsync(cancellationToken);

    public static NpgsqlBatchCommand Command(string sql, params NpgsqlParameter[] parameters)
    {
        var command = new NpgsqlBatchCommand(sql);
        command.Parameters.AddRange(parameters);
        return command;
    }

    public static NpgsqlParameter Text(string? value) => new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text };
    public static NpgsqlParameter Value(object value) => new() { Value = value };

    public async ValueTask DisposeAsync()
    {
        if (_owned)
        {
            await Transaction.DisposeAsync();
            await Connection.DisposeAsync();
        }
    }
}
