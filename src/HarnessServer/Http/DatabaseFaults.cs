using Npgsql;

namespace HarnessServer.Http;

/// <summary>
/// Recognises the errors that mean the database cannot serve right now rather than that a statement was wrong: no
/// primary reachable (a failover under way), a connection broken mid-statement, a server shutting down, starting or
/// in recovery, a demoted primary refusing writes. A request that meets one is answered <c>503</c>
/// <c>database_unavailable</c> with <c>Retry-After</c>; whoever meets one calls <see cref="Report"/>, and the data
/// layer (<c>Data.DatabaseFailover</c>) drops its pooled connections, which may still point at the old primary.
/// Lives here, below <c>Data</c>, so that the problem handler can report without depending on the data layer.
/// </summary>
internal sealed class DatabaseFaults
{
    /// <summary>Raised for every reported fault; handlers must be cheap and must not throw.</summary>
    public event Action? Observed;

    /// <summary>Raises <see cref="Observed"/> when <paramref name="exception"/> is a database fault; returns whether it is.</summary>
    public bool Report(Exception exception)
    {
        if (!IsUnavailable(exception))
        {
            return false;
        }

        Observed?.Invoke();
        return true;
    }

    /// <summary>
    /// True when <paramref name="exception"/>, or an exception it wraps (EF's <c>DbUpdateException</c>, the audit
    /// writer's <c>AuditUnavailableException</c>), is a driver-side failure (cannot connect, no suitable host,
    /// connection broken, timeout) or a server error that says the server cannot serve (connection exceptions, class
    /// 08; shutting down or starting, 57P01-57P03; a read-only transaction on a standby, 25006).
    /// </summary>
    public static bool IsUnavailable(Exception exception)
    {
        for (Exception? e = exception; e is not null; e = e is AggregateException { InnerExceptions.Count: > 0 } all ? all.InnerExceptions[0] : e.InnerException)
        {
            switch (e)
            {
                case PostgresException postgres:
                    return IsUnavailableState(postgres.SqlState);
                case NpgsqlException:
                    // Not a server error: the driver could not connect, lost the connection or timed out.
                    return true;
            }
        }

        return false;
    }

    private static bool IsUnavailableState(string state) =>
        state.StartsWith("08", StringComparison.Ordinal)
        || state is PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow
            or PostgresErrorCodes.ReadOnlySqlTransaction;
}
