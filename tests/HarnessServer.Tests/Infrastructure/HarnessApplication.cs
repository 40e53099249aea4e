using System.Net.Http.Headers;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace HarnessServer.Tests.Infrastructure;

/// <summary>
/// The server under test in Production mode, over its own database in the shared PostgreSQL cluster, trusting the
/// test <see cref="OidcIssuer"/> through discovery and JWKS. One per test class (an xunit class fixture).
/// </summary>
public class HarnessApplication : WebApplicationFactory<Program>, IAsyncLifetime
{
    private readonly Dictionary<string, string?> _settings = new();
    private readonly HarnessApplication? _sibling;

    public HarnessApplication()
    {
        DataRoot = Path.Combine(Path.GetTempPath(), $"harness-test-{Guid.NewGuid():N}");
    }

    // A second server process over the same database, issuer, workspaces and keys (see StartSiblingAsync).
    private HarnessApplication(HarnessApplication sibling)
    {
        _sibling = sibling;
        DataRoot = sibling.DataRoot;
    }

    public PostgresCluster Cluster { get; private set; } = null!;
    public OidcIssuer Issuer { get; private set; } = null!;
    public string Database { get; private set; } = "";
    /// <summary>The superuser's connection string (the schema owner; the servers' migrations).</summary>
    public string ConnectionString => Cluster.ConnectionString(Database);

    /// <summary>The servers' own login (<see cref="PostgresCluster.ApplicationLogin"/>).</summary>
    public string ApplicationConnectionString => Cluster.ApplicationConnectionString(Database);
    public string DataRoot { get; }

    /// <summary>Starts another server over this one's database, as a second process (or a restarted one) would be.</summary>
    public async Task<HarnessApplication> StartSiblingAsync()
    {
        var sibling = new HarnessApplication(this);
        await sibling.InitializeAsync();
        return sibling;
    }

    /// <summary>
    /// Whether memory embeds with the server's real default model. Hosts that do not test meaning embed with
    /// <see cref="Memory.HashEmbeddingTestDouble"/>, which is instant and ranks by shared wording.
    /// </summary>
    protected virtual bool UsesEmbeddingModel => false;

    /// <summary>The cluster this host's database is created in: the shared one unless a fixture needs its own.</summary>
    protected virtual Task<PostgresCluster> StartClusterAsync() => PostgresCluster.SharedAsync();

    /// <summary>Extra configuration for a fixture subclass, applied over the defaults.</summary>
    protected virtual void Configure(IDictionary<string, string?> settings)
    {
    }

    public virtual async Task InitializeAsync()
    {
        if (_sibling is not null)
        {
            (Cluster, Issuer, Database) = (_sibling.Cluster, _sibling.Issuer, _sibling.Database);
            foreach (var (key, value) in _sibling._settings)
            {
                _settings[key] = value;
            }

            _ = Services;
            return;
        }

        Cluster = await StartClusterAsync();
        Issuer = await OidcIssuer.StartAsync();
        Database = await Cluster.CreateDatabaseAsync(GetType().Name);
        Directory.CreateDirectory(DataRoot);

        _settings["ConnectionStrings:Harness"] = ApplicationConnectionString;
        _settings["ConnectionStrings:HarnessMigrations"] = ConnectionString;
        _settings["Authentication:Authority"] = Issuer.Authority;
        _settings["Authentication:Audience"] = OidcIssuer.Audience;
        _settings["Authentication:RequireHttpsMetadata"] = "false";
        _settings["Authentication:KeyRefreshInterval"] = "00:00:01";
        _settings["Harness:MigrateOnStart"] = "true";
        _settings["Harness:WorkspacesPath"] = Path.Combine(DataRoot, "workspaces");
        _settings["Harness:PoliciesPath"] = Path.Combine(DataRoot, "policies");
        // Production refuses to start without an audit signing key; each test host gets its own.
        _settings["Harness:Audit:SigningKeyPath"] = Path.Combine(DataRoot, "audit-signing-key.pem");
        _settings["Harness:Audit:GenerateSigningKey"] = "true";
        Configure(_settings);

        // Start the host now so migrations run before the first test.
        _ = Services;
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Production");
        builder.UseContentRoot(RepositoryRoot);
        foreach (var (key, value) in _settings)
        {
            builder.UseSetting(key, value);
        }

        builder.ConfigureAppConfiguration(configuration => configuration.AddInMemoryCollection(_settings));
        if (!UsesEmbeddingModel)
        {
            builder.ConfigureTestServices(services => services.AddSingleton(new HarnessServer.Memory.MemoryEmbedder(
                new Memory.HashEmbeddingTestDouble(), Memory.HashEmbeddingTestDouble.ModelId, HarnessServer.Memory.MemoryItem.EmbeddingDimensions)));
        }
    }

    /// <summary>A client whose requests carry a bearer token from the issuer for this user.</summary>
    public HttpClient ClientFor(string user, string tenant, string[]? teams = null, string[]? roles = null, string? name = null)
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Authorization =
            new AuthenticationHeaderValue("Bearer", Issuer.CreateToken(user, tenant, teams, roles, name));
        return client;
    }

    public HttpClient ClientWithToken(string token)
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    /// <summary>The folder of HarnessServer.sln, the server's content root as under <c>dotnet run</c>.</summary>
    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "HarnessServer.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("HarnessServer.sln not found above the test binaries.");
    }

    public T Service<T>() where T : notnull => Services.GetRequiredService<T>();

    /// <summary>Runs SQL as the test database's superuser (setup, inspection, a simulated crash or outage).</summary>
    public Task ExecuteAsSuperuserAsync(string sql, params object[] values) =>
        AsSuperuserAsync(sql, values, async command => await command.ExecuteNonQueryAsync());

    /// <summary>The first column of the first row of a query run as the superuser (null when there is no row).</summary>
    public Task<T?> ScalarAsSuperuserAsync<T>(string sql, params object[] values) =>
        AsSuperuserAsync(sql, values, async command => (T?)await command.ExecuteScalarAsync());

    /// <summary>A <c>count(*)</c> query run as the superuser.</summary>
    public async Task<long> CountAsync(string sql, params object[] values) => await ScalarAsSuperuserAsync<long>(sql, values);

    private async Task<T> AsSuperuserAsync<T>(string sql, object[] values, Func<NpgsqlCommand, Task<T>> run)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        return await run(command);
    }

    async Task IAsyncLifetime.DisposeAsync()
    {
        // Virtual: a fixture that owns more (a target server, a scripted model) overrides DisposeAsync to stop it too.
        await DisposeAsync();
        if (_sibling is not null)
        {
            return;
        }

        // A fixture whose start failed before its issuer ran must report that failure, not one of its own here.
        if (Issuer is { } issuer)
        {
            await issuer.DisposeAsync();
        }

        if (Directory.Exists(DataRoot))
        {
            Directory.Delete(DataRoot, recursive: true);
        }
    }
}
