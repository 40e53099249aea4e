using HarnessServer.Data;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Sandbox;

/// <summary>
/// <c>Harness:WorkspaceSharing</c>: how often a replica says it is alive (<see cref="Heartbeat"/>; a replica is live
/// for three heartbeats after its last) and how long a replica may be registered before its marker must be visible
/// everywhere (<see cref="Grace"/>: a network file system's attribute cache can hide a new file for tens of seconds).
/// </summary>
internal sealed class WorkspaceSharingOptions
{
    public TimeSpan Heartbeat { get; set; } = TimeSpan.FromSeconds(10);
    public TimeSpan Grace { get; set; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// Each replica leaves a marker file under <c>&lt;WorkspacesPath&gt;/.replicas/</c> and registers it in
/// <c>replica_workspaces</c> with a heartbeat. A session's calls may run on any replica, so every replica must see
/// the same workspaces: a live replica whose marker is not in this replica's folder means the folder is not shared.
/// </summary>
internal sealed class WorkspaceSharing(
    WorkspaceRoot root, DatabaseSources sources, IOptions<WorkspaceSharingOptions> options, ILogger<WorkspaceSharing> logger) : BackgroundService
{
    // A leading dot cannot collide with a tenant folder: tenant names start with a letter or digit.
    private const string MarkersFolder = ".replicas";

    private const string Register = """
        INSERT INTO replica_workspaces (replica_id, host, workspaces_path, registered_at, seen_at)
        VALUES ($1, $2, $3, now(), now())
        ON CONFLICT (replica_id) DO UPDATE SET seen_at = now()
        """;

    // Rows of replicas killed long ago; their marker files stay (a few bytes each) so that no live one is removed.
    private const string ForgetDead = "DELETE FROM replica_workspaces WHERE seen_at < now() - interval '1 day'";

    private const string LiveOthers = """
        SELECT replica_id, host, workspaces_path, extract(epoch FROM now() - registered_at)::float8
        FROM replica_workspaces
        WHERE replica_id <> $1 AND seen_at > now() - $2::interval
        ORDER BY registered_at
        """;

    /// <summary>This process's identity among the replicas.</summary>
    public Guid ReplicaId { get; } = Guid.NewGuid();

    private string MarkersPath => Path.Combine(root.FullPath, MarkersFolder);
    private string MarkerPath => Path.Combine(MarkersPath, ReplicaId.ToString("N"));

    /// <summary>Null when every live replica's marker is visible here; otherwise what is missing, in words.</summary>
    public async Task<string?> FindUnsharedAsync(CancellationToken cancellationToken)
    {
        WriteMarker();
        await using var command = sources.Application.CreateCommand(LiveOthers);
        command.Parameters.Add(new NpgsqlParameter { Value = ReplicaId });
        command.Parameters.Add(new NpgsqlParameter { Value = options.Value.Heartbeat * 3 });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var (id, host, path, age) = (reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetDouble(3));
            if (age >= options.Value.Grace.TotalSeconds && !File.Exists(Path.Combine(MarkersPath, id.ToString("N"))))
            {
                return $"not shared: live replica {id:N} on {host} (its Harness:WorkspacesPath is {path}) wrote its marker " +
                       $"{age:0} s ago, but {Path.Combine(MarkersPath, id.ToString("N"))} is not visible on this replica " +
                       $"({Environment.MachineName}, {root.FullPath}). Calls of one session would see different files on " +
                       "different replicas: mount one shared (ReadWriteMany) volume at Harness:WorkspacesPath on every replica.";
            }
        }

        return null;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.Heartbeat);
        do
        {
            try
            {
                WriteMarker();
                await using var batch = sources.Application.CreateBatch();
                batch.BatchCommands.Add(new NpgsqlBatchCommand(Register)
                {
                    Parameters = { new() { Value = ReplicaId }, new() { Value = Environment.MachineName }, new() { Value = root.FullPath } },
                });
                batch.BatchCommands.Add(new NpgsqlBatchCommand(ForgetDead));
                await batch.ExecuteNonQueryAsync(stoppingToken);
            }
            catch (Exception e) when (e is NpgsqlException or IOException or UnauthorizedAccessException or TimeoutException or SandboxException)
            {
                // The database or the volume is away for a moment; the next heartbeat registers again.
                logger.LogWarning(e, "Could not register this replica's workspaces marker {Marker}", MarkerPath);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        try
        {
            await using var command = sources.Application.CreateCommand("DELETE FROM replica_workspaces WHERE replica_id = $1");
            command.Parameters.Add(new NpgsqlParameter { Value = ReplicaId });
            await command.ExecuteNonQueryAsync(cancellationToken);
            File.Delete(MarkerPath);
        }
        catch (Exception e) when (e is NpgsqlException or IOException or UnauthorizedAccessException or TimeoutException or OperationCanceledException)
        {
            // Its row then ages out: after three heartbeats no replica waits for this marker.
            logger.LogWarning(e, "Could not unregister this replica's workspaces marker {Marker}", MarkerPath);
        }
    }

    private void WriteMarker()
    {
        if (!File.Exists(MarkerPath))
        {
            root.CreateServerFolder(MarkersFolder);
            File.WriteAllText(MarkerPath, $"{Environment.MachineName}\n");
        }
    }
}

/// <summary>Unready when a live replica's workspaces marker is not visible here (<see cref="WorkspaceSharing"/>).</summary>
internal sealed class WorkspaceSharingHealthCheck(WorkspaceSharing sharing) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            return await sharing.FindUnsharedAsync(cancellationToken) is { } unshared
                ? HealthCheckResult.Unhealthy(unshared)
                : HealthCheckResult.Healthy("shared: every live replica's marker is visible here.");
        }
        catch (Exception e) when (e is NpgsqlException or IOException or UnauthorizedAccessException or TimeoutException or SandboxException)
        {
            return HealthCheckResult.Unhealthy($"Cannot tell whether the workspaces are shared: {e.Message}");
        }
    }
}
