using Npgsql;

namespace HarnessServer.Pipeline;

/// <summary>
/// Runs one session's calls one at a time, in arrival order, while different sessions run in parallel. Within a
/// process a FIFO lane per session orders the calls and a waiting call holds no database connection; the call at the
/// head of the lane also takes a PostgreSQL advisory lock on the session, so two server processes sharing the
/// database never run calls of one session at the same time either.
/// </summary>
internal sealed class SessionGate(NpgsqlDataSource dataSource)
{
    private readonly Dictionary<Guid, Lane> _lanes = [];

    public async Task<IDisposable> EnterAsync(Guid sessionId, CancellationToken cancellationToken)
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
            connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await using var command = new NpgsqlCommand("SELECT pg_advisory_lock($1)", connection)
            {
                Parameters = { new() { Value = LockKey(sessionId) } },
            };
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch
        {
            if (connection is not null)
            {
                await connection.DisposeAsync();
            }

            Leave(sessionId, lane, release: true);
            throw;
        }

        return new Ticket(this, sessionId, lane, connection);
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

    private sealed class Lane
    {
        // SemaphoreSlim queues waiters in arrival order for async waits.
        public SemaphoreSlim Semaphore { get; } = new(1, 1);
        public int Users { get; set; }
    }

    private sealed class Ticket(SessionGate gate, Guid sessionId, Lane lane, NpgsqlConnection connection) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                // Closing the session's connection would also drop the lock, but a pooled connection lives on.
                try
                {
                    using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock($1)", connection)
                    {
                        Parameters = { new() { Value = LockKey(sessionId) } },
                    };
                    unlock.ExecuteNonQuery();
                }
                catch (NpgsqlException)
                {
                    // A broken connection has lost its locks with its backend.
                }
                finally
                {
                    connection.Dispose();
                    gate.Leave(sessionId, lane, release: true);
                }
            }
        }
    }
}
