using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace HarnessServer.Tests.Infrastructure;

/// <summary>
/// A throwaway PostgreSQL 15 cluster with pgvector for the whole test run: system binaries, a random port, a temp
/// folder removed afterwards. When the tests run as root the cluster runs as the unprivileged <c>harness-pg</c> user
/// (created by scripts/provision.sh), because initdb refuses root.
/// </summary>
public sealed class PostgresCluster : IAsyncDisposable
{
    private const string BinDirectory = "/usr/lib/postgresql/15/bin";
    private const string ClusterUser = "harness-pg";

    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static PostgresCluster? _shared;
    private int _databases;

    private PostgresCluster(string directory, int port)
    {
        Directory = directory;
        Port = port;
    }

    public string Directory { get; }
    public int Port { get; }

    /// <summary>The servers' own login: only what harness_app may do.</summary>
    public const string ApplicationLogin = "harness_login";

    /// <summary>The servers' connection string for a database of this cluster (<see cref="ApplicationLogin"/>).</summary>
    public string ApplicationConnectionString(string database) =>
        $"Host=127.0.0.1;Port={Port};Database={database};Username={ApplicationLogin};Pooling=true;Maximum Pool Size=50";

    /// <summary>Superuser connection string for a database of this cluster.</summary>
    public string ConnectionString(string database) =>
        $"Host=127.0.0.1;Port={Port};Database={database};Username=postgres;Pooling=true;Maximum Pool Size=50";

    /// <summary>The cluster shared by every test class; started on first use, stopped when the process exits.</summary>
    public static async Task<PostgresCluster> SharedAsync()
    {
        await Gate.WaitAsync();
        try
        {
            if (_shared is null)
            {
                _shared = await StartAsync();
                AppDomain.CurrentDomain.ProcessExit += (_, _) => _shared.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }

            return _shared;
        }
        finally
        {
            Gate.Release();
        }
    }

    /// <summary>Creates an empty database with pgvector and returns its name.</summary>
    public async Task<string> CreateDatabaseAsync(string prefix)
    {
        var name = $"{prefix}_{Interlocked.Increment(ref _databases)}_{Environment.ProcessId}".ToLowerInvariant();
        await using (var connection = new NpgsqlConnection(ConnectionString("postgres")))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
            await create.ExecuteNonQueryAsync();
        }

        await using (var connection = new NpgsqlConnection(ConnectionString(name)))
        {
            await connection.OpenAsync();
            await using var extension = new NpgsqlCommand("CREATE EXTENSION IF NOT EXISTS vector", connection);
            await extension.ExecuteNonQueryAsync();
        }

        return name;
    }

    /// <summary>
    /// A cluster of the caller's own, started with extra server options (<c>-c name=value ...</c>, e.g. a preloaded
    /// library the shared cluster does not load); the caller disposes it.
    /// </summary>
    public static Task<PostgresCluster> StartOwnAsync(string serverOptions) => StartAsync(serverOptions);

    private static async Task<PostgresCluster> StartAsync(string serverOptions = "")
    {
        var directory = Path.Combine(Path.GetTempPath(), $"harness-pg-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(directory);
        var asRoot = Environment.UserName == "root";
        if (asRoot)
        {
            await RunAsync("chown", [ClusterUser, directory], asRoot: false);
        }

        var data = Path.Combine(directory, "data");
        await RunAsync(Path.Combine(BinDirectory, "initdb"),
            ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"], asRoot);

        var port = FreePort();
        // Test clusters trade durability for speed; the audit benchmarks run against fsync-on clusters. Every test
        // class's host keeps its own pools on the one shared cluster, and classes run in parallel: 300 connections
        // ran out once the MCP and CLI classes joined the suite.
        await RunAsync(Path.Combine(BinDirectory, "pg_ctl"),
            ["-D", data, "-w", "-l", Path.Combine(directory, "log"), "-o",
                $"-p {port} -c listen_addresses=127.0.0.1 -k {directory} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=800 {serverOptions}",
                "start"], asRoot);
        var cluster = new PostgresCluster(directory, port);
        // Roles are cluster-wide: create the application role once, so that test hosts migrating their databases in
        // parallel do not race to create it (the migration creates it only when missing).
        await using (var connection = new NpgsqlConnection(cluster.ConnectionString("postgres")))
        {
            await connection.OpenAsync();
            // The servers log in as harness_login, a member of harness_app and nothing more, as in production;
            // the superuser is their migrations' login (ConnectionStrings:HarnessMigrations).
            await using var role = new NpgsqlCommand($"CREATE ROLE harness_app NOLOGIN; CREATE ROLE {ApplicationLogin} LOGIN; GRANT harness_app TO {ApplicationLogin}", connection);
            await role.ExecuteNonQueryAsync();
        }

        return cluster;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await RunAsync(Path.Combine(BinDirectory, "pg_ctl"),
                ["-D", Path.Combine(Directory, "data"), "-m", "immediate", "-w", "stop"], Environment.UserName == "root");
        }
        finally
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
    }

    private static async Task RunAsync(string program, string[] arguments, bool asRoot)
    {
        var start = new ProcessStartInfo(asRoot ? "/usr/bin/setpriv" : program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
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
            throw new InvalidOperationException(
                $"{program} {string.Join(' ', arguments)} exited {process.ExitCode}: {await stderr}{await stdout}");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
