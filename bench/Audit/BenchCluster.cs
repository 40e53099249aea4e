using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace HarnessServer.AuditBench;

/// <summary>
/// A throwaway PostgreSQL 15 cluster as the tests start one (tests/…/PostgresCluster.cs), but durable: fsync,
/// synchronous_commit and full_page_writes stay at their defaults (on), and the data lives on disk, not tmpfs.
/// </summary>
internal sealed class BenchCluster : IAsyncDisposable
{
    private const string BinDirectory = "/usr/lib/postgresql/15/bin";
    private const string ClusterUser = "harness-pg";
    private readonly string _directory;
    private readonly bool _asRoot = Environment.UserName == "root";

    private BenchCluster(string directory, int port)
    {
        _directory = directory;
        Port = port;
    }

    public int Port { get; }

    public string ConnectionString(string database) =>
        $"Host=127.0.0.1;Port={Port};Database={database};Username=postgres;Maximum Pool Size=200";

    public static async Task<BenchCluster> StartAsync(string parent)
    {
        var directory = Path.Combine(parent, $"audit-bench-pg-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        var asRoot = Environment.UserName == "root";
        if (asRoot)
        {
            await RunAsync("chown", [ClusterUser, directory], false);
        }

        var data = Path.Combine(directory, "data");
        await RunAsync(Path.Combine(BinDirectory, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"], asRoot);
        var port = FreePort();
        await RunAsync(Path.Combine(BinDirectory, "pg_ctl"),
            ["-D", data, "-w", "-l", Path.Combine(directory, "log"), "-o",
                $"-p {port} -c listen_addresses=127.0.0.1 -k {directory} -c max_connections=300 -c shared_buffers=256MB -c fsync=on -c synchronous_commit=on -c full_page_writes=on",
                "start"], asRoot);
        return new BenchCluster(directory, port);
    }

    public async Task<string> SettingsAsync()
    {
        await using var connection = new NpgsqlConnection(ConnectionString("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT version() || ' | fsync=' || current_setting('fsync') || ', synchronous_commit=' || current_setting('synchronous_commit') || ', wal_sync_method=' || current_setting('wal_sync_method')",
            connection);
        return (string)(await command.ExecuteScalarAsync())!;
    }

    public async Task CreateDatabaseAsync(string name)
    {
        await using var connection = new NpgsqlConnection(ConnectionString("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
        await command.ExecuteNonQueryAsync();
        await using var vector = new NpgsqlConnection(ConnectionString(name));
        await vector.OpenAsync();
        await using var extension = new NpgsqlCommand("CREATE EXTENSION IF NOT EXISTS vector", vector);
        await extension.ExecuteNonQueryAsync();
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await RunAsync(Path.Combine(BinDirectory, "pg_ctl"), ["-D", Path.Combine(_directory, "data"), "-m", "immediate", "-w", "stop"], _asRoot);
        }
        finally
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    private static async Task RunAsync(string program, string[] arguments, bool asRoot)
    {
        var start = new ProcessStartInfo(asRoot ? "/usr/bin/setpriv" : program) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (asRoot)
        {
            foreach (var argument in (string[])["--reuid", ClusterUser, "--regid", ClusterUser, "--init-groups", program])
            {
                start.ArgumentList.Add(argument);
            }
        }

        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} exited {process.ExitCode}: {await stderr}{await stdout}");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
