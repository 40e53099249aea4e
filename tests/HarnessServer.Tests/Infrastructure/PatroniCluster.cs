using System.Diagnostics;

namespace HarnessServer.Tests.Infrastructure;

/// <summary>
/// A real HA PostgreSQL pair for one test class: <c>scripts/patroni-cluster.sh</c> starts etcd and two Patroni nodes
/// (a primary and a synchronous streaming replica) under a temp folder; disposing stops them and removes it.
/// </summary>
public sealed class PatroniCluster : IAsyncDisposable
{
    private static readonly string Script = Path.Combine(HarnessApplication.RepositoryRoot, "scripts", "patroni-cluster.sh");

    private PatroniCluster(string directory, IReadOnlyDictionary<string, string> environment)
    {
        Directory = directory;
        Environment = environment;
    }

    public string Directory { get; }

    /// <summary>The cluster's <c>cluster.env</c>: ports, passwords, connection strings.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; }

    /// <summary>The servers' multi-host connection string (harness_login, Target Session Attributes=primary).</summary>
    public string ApplicationConnectionString => Environment["HARNESS_CONNECTION"];

    /// <summary>The superuser's multi-host connection string (migrations, inspection).</summary>
    public string SuperuserConnectionString => Environment["HARNESS_MIGRATIONS_CONNECTION"];

    /// <summary>Why the cluster cannot run on this machine, or null (scripts/provision.sh installs everything).</summary>
    public static string? Missing()
    {
        foreach (var binary in (string[])["/usr/bin/patroni", "/usr/bin/patronictl", "/usr/bin/etcd", "/usr/lib/postgresql/15/bin/postgres"])
        {
            if (!File.Exists(binary))
            {
                return $"{binary} is missing: run scripts/provision.sh (it installs Debian's patroni and etcd-server)";
            }
        }

        return null;
    }

    public static async Task<PatroniCluster> StartAsync()
    {
        var directory = Path.Combine(Path.GetTempPath(), $"harness-patroni-{Guid.NewGuid():N}");
        try
        {
            await RunAsync("start", directory);
        }
        catch
        {
            await RunAsync("stop", directory, check: false);
            throw;
        }

        var environment = File.ReadAllLines(Path.Combine(directory, "cluster.env"))
            .Select(line => line.Split('=', 2))
            .Where(parts => parts.Length == 2)
            .ToDictionary(parts => parts[0], parts => parts[1].Trim('\''));
        return new PatroniCluster(directory, environment);
    }

    /// <summary>SIGKILLs the leader's Patroni and PostgreSQL, waits for the replica's promotion; returns the new leader.</summary>
    public async Task<string> KillPrimaryAsync() => (await RunAsync("kill-primary", Directory)).Trim();

    public async ValueTask DisposeAsync()
    {
        await RunAsync("stop", Directory, check: false);
        if (System.IO.Directory.Exists(Directory))
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
    }

    private static async Task<string> RunAsync(string command, string directory, bool check = true)
    {
        var start = new ProcessStartInfo(Script) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(command);
        start.ArgumentList.Add(directory);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (check && process.ExitCode != 0)
        {
            throw new InvalidOperationException($"patroni-cluster.sh {command} exited {process.ExitCode}: {await stderr}{await stdout}");
        }

        return await stdout;
    }
}

/// <summary>A fact that needs the Patroni cluster; skipped, saying why, only when its binaries are missing.</summary>
public sealed class PatroniFactAttribute : FactAttribute
{
    public PatroniFactAttribute()
    {
        if (PatroniCluster.Missing() is { } missing)
        {
            Skip = missing;
        }
    }
}
