using System.Collections.Concurrent;
using System.Diagnostics;
using HarnessServer.Data;
using HarnessServer.Sessions;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Agents;

/// <summary>
/// Moves open turns on without a request: at start (turns whose process died), whenever a tool call of any session
/// changes (an approval decided or executed, heard through <see cref="ChangeFeed"/> from every process), when
/// <see cref="Wake"/> is called (session resumed), and every <see cref="AgentOptions.RecoveryInterval"/>.
/// Each open turn is handed to <see cref="AgentTurns.ContinueAsync"/>, which takes the session's turn lock, so a turn
/// another process is running is left alone and no turn is continued twice.
/// </summary>
internal sealed class TurnRecovery(
    DatabaseSources sources,
    IServiceScopeFactory scopes,
    ChangeFeed feed,
    IOptions<AgentOptions> options,
    ILogger<TurnRecovery> logger) : BackgroundService
{
    // Under load tool calls change hundreds of times a second; a pass reads every open turn, so passes start at most
    // this often. An approval's turn continues at most this much later.
    private static readonly TimeSpan MinPassInterval = TimeSpan.FromMilliseconds(200);

    private readonly SemaphoreSlim _wake = new(0);
    private readonly ConcurrentDictionary<Guid, Task> _running = new();
    private long _wakes;

    /// <summary>Something changed that may let an open turn go on (a call decided or finished, a session resumed).</summary>
    public void Wake()
    {
        Interlocked.Increment(ref _wakes);
        Signal();
    }

    private void Signal()
    {
        if (_wake.CurrentCount == 0)
        {
            _wake.Release();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        feed.Changed += OnChanged;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var started = Stopwatch.GetTimestamp();
                try
                {
                    foreach (var (tenant, turn) in await OpenTurnsAsync(stoppingToken))
                    {
                        if (!_running.ContainsKey(turn))
                        {
                            _running[turn] = Task.Run(() => ContinueAsync(tenant, turn, stoppingToken), CancellationToken.None);
                        }
                    }
                }
                catch (NpgsqlException e)
                {
                    logger.LogWarning(e, "Looking for open agent turns failed; retrying");
                }

                await _wake.WaitAsync(options.Value.RecoveryInterval, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
                if (MinPassInterval - Stopwatch.GetElapsedTime(started) is { Ticks: > 0 } rest)
                {
                    await Task.Delay(rest, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
                }
            }
        }
        finally
        {
            feed.Changed -= OnChanged;
            await Task.WhenAll(_running.Values).ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }

    private void OnChanged(string kind, string? key)
    {
        if (kind == SessionEvents.Kind)
        {
            Wake();
        }
    }

    private async Task ContinueAsync(string tenant, Guid turn, CancellationToken cancellationToken)
    {
        var wakes = Interlocked.Read(ref _wakes);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            await scope.ServiceProvider.GetRequiredService<AgentTurns>().ContinueAsync(tenant, turn, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            // A failure leaves the turn as stored; the next pass tries again from the same step.
            logger.LogError(e, "Continuing turn {Turn} of {Tenant} failed", turn, tenant);
        }
        finally
        {
            _running.TryRemove(turn, out _);
            // A pass that ran while this turn was busy skipped it; the change it was woken for may be this turn's.
            // Signal, not Wake: passes re-run for outside changes only, so two busy turns cannot wake each other forever.
            if (Interlocked.Read(ref _wakes) != wakes)
            {
                Signal();
            }
        }
    }

    // Across tenants, so through the application connection directly rather than the tenant-filtered context.
    private async Task<List<(string Tenant, Guid Turn)>> OpenTurnsAsync(CancellationToken cancellationToken)
    {
        var open = new List<(string, Guid)>();
        await using var connection = await sources.Application.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            "SELECT tenant_id, id FROM agent_turns WHERE status IN ('Running', 'WaitingForApproval', 'Paused') ORDER BY updated_at LIMIT 500",
            connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            open.Add((reader.GetString(0), reader.GetGuid(1)));
        }

        return open;
    }
}
