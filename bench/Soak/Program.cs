using HarnessServer.Soak;
using HarnessServer.Tests.Infrastructure;

// bench/run-soak.sh starts the Patroni cluster and passes its connection strings; this starts the issuer and the
// scripted model, runs the soak and writes its results file. Exit code 1 when an invariant was violated.
string Setting(string name, string? fallback = null) =>
    Environment.GetEnvironmentVariable(name) ?? fallback ?? throw new InvalidOperationException($"{name} is not set");
TimeSpan Seconds(string name, double fallback) => TimeSpan.FromSeconds(double.Parse(Setting(name, fallback.ToString(System.Globalization.CultureInfo.InvariantCulture)), System.Globalization.CultureInfo.InvariantCulture));

var duration = Seconds("SOAK_SECONDS", 600);
var patroni = Environment.GetEnvironmentVariable("SOAK_PATRONI_DIR");
var output = Setting("SOAK_OUTPUT", "bench/results/soak.md");
await using var issuer = await OidcIssuer.StartAsync();
await using var model = await ScriptedModelServer.StartAsync();
model.Otherwise(request =>
{
    var (text, calls) = SoakRun.ModelAnswer(request);
    return new ScriptedModelServer.ScriptedAnswer(text, calls);
});

var options = new SoakOptions
{
    Duration = duration,
    Users = int.Parse(Setting("SOAK_USERS", "50"), System.Globalization.CultureInfo.InvariantCulture),
    Tenants = int.Parse(Setting("SOAK_TENANTS", "3"), System.Globalization.CultureInfo.InvariantCulture),
    KillEvery = Seconds("SOAK_KILL_EVERY_SECONDS", 120),
    FailoverAt = patroni is null ? null : Seconds("SOAK_FAILOVER_AT_SECONDS", duration.TotalSeconds / 2),
    ServerDll = Setting("SOAK_SERVER_DLL"),
    RepositoryRoot = Setting("SOAK_REPOSITORY"),
    WorkFolder = Setting("SOAK_WORK_DIR"),
    ConnectionString = Setting("HARNESS_CONNECTION"),
    MigrationsConnectionString = Setting("HARNESS_MIGRATIONS_CONNECTION"),
    PatroniFolder = patroni,
    Authority = issuer.Authority,
    Audience = OidcIssuer.Audience,
    ModelEndpoint = model.Endpoint,
    Token = (user, tenant, teams, roles) => issuer.CreateToken(user, tenant, teams, roles),
};

var report = await new SoakRun(options, Console.Out).RunAsync(CancellationToken.None);
await File.WriteAllTextAsync(output, report.Markdown);
Console.WriteLine($"wrote {output}: {(report.Violations.Count == 0 ? "every invariant held" : $"{report.Violations.Count} violations")}");
return report.Violations.Count == 0 ? 0 : 1;
