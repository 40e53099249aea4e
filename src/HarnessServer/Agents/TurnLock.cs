using Npgsql;

namespace HarnessServer.Agents;

/// <summary>
/// One turn per session at a time, across server processes: a PostgreSQL advisory lock on the session (two-int key
/// space, distinct from <see cref="Pipeline.SessionGate"/>'s bigint one) held on its own connection for as long as
/// the turn runs. A process that dies drops its connection and with it the lock, which is how recovery tells a
/// crashed turn from one that is still running elsewhere.
/// </summary>
internal sealed class TurnLock(NpgsqlDataSource dataSource)
{
    /// <summary>The session's turn lock, or null when another turn of the session holds it.</summary>
    public async Task<IAsyncDisposable?> TryAcquireAsync(Guid sessionId, CancellationToken cancellationToken)
    {
        var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        try
        {
            var (high, low) = Keys(sessionId);
            await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock($1, $2)", connection)
            {
                Parameters = { new() { Value = high }, new() { Value = low } },
            };
            if (await command.ExecuteScalarAsync(cancellationToken) is true)
            {
                return new HeldLock(connection, high, low);
            }
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        await connection.DisposeAsync();
        return null;
    }

    /// <summary>
    /// Waits up to <paramref name="wait"/> for the session's turn lock; null when it is still held then. For a holder
    /// that lets go soon: another process's recovery pass looking at the session's last turn, or a rollback.
    /// </summary>
    public async Task<IAsyncDisposable?> AcquireAsync(Guid sessionId, TimeSpan wait, CancellationToken cancellationToken)
    {
        var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        try
        {
            var (high, low) = Keys(sessionId);
            await using (var timeout = new NpgsqlCommand($"SET lock_timeout = {(int)Math.Max(1, wait.TotalMilliseconds)}", connection))
            {
                await timeout.ExecuteNonQueryAsync(cancellationToken);
            }

            await using var command = new NpgsqlCommand("SELECT pg_advisory_lock($1, $2)", connection)
            {
                Parameters = { new() { Value = high }, new() { Value = low } },
            };
            await command.ExecuteNonQueryAsync(cancellationToken);
            await using (var reset = new NpgsqlCommand("RESET lock_timeout", connection))
            {
                await reset.ExecuteNonQueryAsync(cancellationToken);
            }

            return new HeldLock(connection, high, low);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            await connection.DisposeAsync();
            return null;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    // The random tail of the session's UUIDv7, as the two int keys.
    internal static (int High, int Low) Keys(Guid sessionId)
    {
        Span<byte> bytes = stackalloc byte[16];
        sessionId.TryWriteBytes(bytes);
        return (BitConverter.ToInt32(bytes[8..]), BitConverter.ToInt32(bytes[12..]));
    }

    private sealed class HeldLock(NpgsqlConnection connection, int high, int low) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            try
            {
                await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock($1, $2)", connection)
                {
                    Parameters = { new() { Value = high }, new() { Value = low } },
                };
                await unlock.ExecuteNonQueryAsync();
            }
            catch (NpgsqlException)
            {
                // A broken connection has lost its locks with its backend.
            }
            finally
            {
                await connection.DisposeAsync();
            }
        }
    }
}
