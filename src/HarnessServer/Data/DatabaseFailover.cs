using System.Diagnostics;
using HarnessServer.Http;
using Npgsql;

namespace HarnessServer.Data;

/// <summary>
/// Rides out a primary switch: on every database fault reported to <see cref="DatabaseFaults"/> (by the problem
/// handler, the audit writer, the change feed) it clears the server's connection pools, at most once per
/// <see cref="MinInterval"/>, so that idle connections to a dead or demoted primary are closed instead of failing one
/// request each, and busy ones are closed when returned; with a multi-host connection string it also forgets which
/// host was the primary, so the next open looks again instead of trusting a state cached for
/// <c>Host Recheck Seconds</c>.
/// </summary>
internal sealed class DatabaseFailover(DatabaseSources sources, DatabaseFaults faults, ILogger<DatabaseFailover> logger) : IHostedService
{
    public static readonly TimeSpan MinInterval = TimeSpan.FromSeconds(1);

    private long _lastCleared;
    private int _clears;

    /// <summary>How many times the pools were cleared.</summary>
    public int Clears => _clears;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        faults.Observed += Clear;
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        faults.Observed -= Clear;
        return Task.CompletedTask;
    }

    private void Clear()
    {
        var now = Stopwatch.GetTimestamp();
        var last = Interlocked.Read(ref _lastCleared);
        if (last != 0 && Stopwatch.GetElapsedTime(last, now) < MinInterval)
        {
            return;
        }

        if (Interlocked.CompareExchange(ref _lastCleared, now, last) != last)
        {
            return;
        }

        foreach (var source in new[] { sources.Application, sources.SessionLocks })
        {
            if (source is NpgsqlMultiHostDataSource multiHost)
            {
                multiHost.ClearDatabaseStates();
            }

            source.Clear();
        }

        Interlocked.Increment(ref _clears);
        logger.LogWarning("The database is unavailable or its primary changed; connection pools cleared");
    }
}
