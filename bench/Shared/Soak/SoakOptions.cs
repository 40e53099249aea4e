namespace HarnessServer.Soak;

/// <summary>What one soak run does and what it runs against; the bench (bench/run-soak.sh) and the test suite fill it.</summary>
internal sealed record SoakOptions
{
    public TimeSpan Duration { get; init; } = TimeSpan.FromMinutes(10);
    public int Users { get; init; } = 50;
    public int Tenants { get; init; } = 3;

    /// <summary>A replica (alternating) is SIGKILLed and restarted this often.</summary>
    public TimeSpan KillEvery { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>When the planned Patroni switchover runs; null: no failover (no Patroni cluster).</summary>
    public TimeSpan? FailoverAt { get; init; }

    /// <summary>A user's pause between two requests is drawn from this range.</summary>
    public TimeSpan ThinkMin { get; init; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan ThinkMax { get; init; } = TimeSpan.FromMilliseconds(2500);

    /// <summary>How long a fault counts as the cause of a 503 or a proxy error: from its start to this long after its end.</summary>
    public TimeSpan FaultWindow { get; init; } = TimeSpan.FromSeconds(30);

    public required string ServerDll { get; init; }
    public required string RepositoryRoot { get; init; }

    /// <summary>Workspaces, keys, policies and the replicas' logs go here (the shared storage of both replicas).</summary>
    public required string WorkFolder { get; init; }

    /// <summary>The servers' own login (a multi-host string on Patroni).</summary>
    public required string ConnectionString { get; init; }

    /// <summary>The owner's login: migrations and the checks' reads.</summary>
    public required string MigrationsConnectionString { get; init; }

    /// <summary>The cluster folder of scripts/patroni-cluster.sh, for the failover; null without Patroni.</summary>
    public string? PatroniFolder { get; init; }

    public required string Authority { get; init; }
    public required string Audience { get; init; }
    public required string ModelEndpoint { get; init; }

    /// <summary>A bearer token for (user, tenant, teams, roles) from the issuer at <see cref="Authority"/>.</summary>
    public required Func<string, string, string[], string[], string> Token { get; init; }
}
