using HarnessServer.Data;
using HarnessServer.Sessions;
using Npgsql;

namespace HarnessServer.Pipeline;

/// <summary>
/// Runs one session's calls one at a time, in arrival order, while different sessions run in parallel. Within a
/// process a FIFO lane per session orders the calls and a waiting call holds no database connection; the call at the
/// head of the lane also takes a PostgreSQL advisory lock on the session, so two server processes sharing the
/// database never run calls of one session at the same time either. The session is read under that lock, in the
/// same round trip, so a call sees the status its predecessors left (a pause lands before the calls queued behind it).
/// </summary>
internal sealed class SessionGate(DatabaseSources sources, ILogger<SessionGate> logger)
{
    private const string Lock = "SELECT pg_advisory_lock($1)";
    private const string ReadSession = """
        SELECT owner_user_id, owner_name, status, created_at, updated_at, xmin FROM sessions WHERE tenant_id = $1 AND id = $2
        """;

    private readonly Dictionary<Guid, Lane> _lanes = [];

    /// <summary>
    /// Waits for the session's turn in this process, locks it against the others and reads it.
    /// <see cref="Ticket.Session"/> is null when the tenant has no such session; the caller still leaves through
    /// <see cref="Ticket.DisposeAsync"/>.
    /// </summary>
    public async Task<Ticket> EnterAsync(string tenantId, Guid sessionId, CancellationToken cancellationToken)
    {
        Lane lane;
        lock (_lanes)
        {
            if (!_lanes.TryGetValue(sessionId, out lane!))
            {
                lane = new Lane();
                _lanes[sessionId] = lane;
            }

            lane.Users++;
        }

        try
        {
            await lane.Semaphore.WaitAsync(cancellationToken);
        }
        catch
        {
            Leave(sessionId, lane, release: false);
            throw;
        }

        NpgsqlConnection? connection = null;
        try
        {
            connection = await sources.SessionLocks.OpenConnectionAsync(cancellationToken);
            var key = LockKey(sessionId);
            await using var batch = new NpgsqlBatch(connection)
            {
                BatchCommands =
                {
                    new NpgsqlBatchCommand(Lock) { Parameters = { new() { Value = key } } },
                    new NpgsqlBatchCommand(ReadSession) { Parameters = { new() { Value = tenantId }, new() { Value = sessionId } } },
                },
            };
            Session? session = null;
            await using (var reader = await batch.ExecuteReaderAsync(cancellationToken))
            {
                await reader.NextResultAsync(cancellationToken);
                if (await reader.ReadAsync(cancellationToken))
                {
                    session = new Session
                    {
                        Id = sessionId,
                        TenantId = tenantId,
                        OwnerUserId = reader.GetString(0),
                        OwnerName = reader.GetString(1),
                        Status = Enum.Parse<SessionStatus>(reader.GetString(2)),
                        CreatedAt = reader.GetFieldValue<DateTimeOffset>(3),
                        UpdatedAt = reader.GetFieldValue<DateTimeOffset>(4),
                        Version = reader.GetFieldValue<uint>(5),
                    };
                }
            }

            return new Ticket(this, sessionId, lane, connection, session);
        }
        catch
        {
            if (connection is not null)
            {
                // The lock may have been granted before the failure (a cancellation racing the grant): only closing
                // the backend is sure to drop it, and these pooled connections are never reset.
                NpgsqlConnection.ClearPool(connection);
                await connection.DisposeAsync();
            }

            Leave(sessionId, lane, release: true);
            throw;
        }
    }

    // The advisory lock key space is shared with nothing else in this database; the session id's first 8 bytes
    // are random enough (UUIDv7's random tail differs per session created in the same millisecond too).
    internal static long LockKey(Guid sessionId)
    {
        Span<byte> bytes = stackalloc byte[16];
        sessionId.TryWriteBytes(bytes);
        return BitConverter.ToInt64(bytes[8..]);
    }

    private void Leave(Guid sessionId, Lane lane, bool release)
    {
        if (release)
        {
            lane.Semaphore.Release();
        }

        lock (_lanes)
        {
            if (--lane.Users == 0)
            {
                _lanes.Remove(sessionId);
                lane.Semaphore.Dispose();
            }
        }
    }

    private async Task UnlockAsync(Guid sessionId, Lane lane, NpgsqlConnection connection)
    {
        try
        {
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock($1)", connection)
            {
                Parameters = { new() { Value = LockKey(sessionId) } },
            };
            await unlock.ExecuteNonQueryAsync();
        }
        catch (Exception e)
        {
            // Closing the backend drops the lock whatever went wrong; a pooled connection would keep it.
            logger.LogWarning(e, "Releasing the lock of session {Session} failed; closing its connection instead", sessionId);
            NpgsqlConnection.ClearPool(connection);
        }
        finally
        {
            await connection.DisposeAsync();
            Leave(sessionId, lane, release: true);
        }
    }

    internal sealed class Lane
    {
        // SemaphoreSlim queues waiters in arrival order for async waits.
        public SemaphoreSlim Semaphore { get; } = new(1, 1);
        public int Users { get; set; }
    }

    /// <summary>The session's turn: held until disposed.</summary>
    public sealed class Ticket : IAsyncDisposable
    {
        private readonly SessionGate _gate;
        private readonly Guid _sessionId;
        private readonly Lane _lane;
        private readonly NpgsqlConnection _connection;
        private int _disposed;

        internal Ticket(SessionGate gate, Guid sessionId, Lane lane, NpgsqlConnection connection, Session? session)
        {
            _gate = gate;
            _sessionId = sessionId;
            _lane = lane;
            _connection = connection;
            Session = session;
        }

        /// <summary>The session as stored when the lock was granted, or null when this tenant has none by that id.</summary>
        public Session? Session { get; }

        /// <summary>
        /// Gives the turn up. The unlock's round trip is not awaited: the caller's response does not depend on it, and
        /// the next call of the session in this process enters only once it is done (another process's call waits
        /// for the lock itself).
        /// </summary>
        public ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                _ = _gate.UnlockAsync(_sessionId, _lane, _connection);
            }

            return ValueTask.CompletedTask;
        }
    }
}
