using HarnessServer.Soak;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Replicas;

/// <summary>
/// The soak of bench/run-soak.sh in short (bench/Shared/Soak is shared): two server processes behind YARP over one
/// database (the Patroni pair when this machine has it, with a switchover mid-run) and one workspaces folder, a dozen
/// users of three tenants, one replica SIGKILLed and restarted; then every invariant of the full run.
/// </summary>
public sealed class SoakTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public async Task Two_replicas_behind_YARP_lose_nothing_and_run_nothing_twice_across_a_SIGKILL_and_a_database_switchover()
    {
        var work = Path.Combine(Path.GetTempPath(), $"harness-soak-{Guid.NewGuid():N}");
        await using var issuer = await OidcIssuer.StartAsync();
        await using var model = await ScriptedModelServer.StartAsync();
        model.Otherwise(request =>
        {
            var (text, calls) = SoakRun.ModelAnswer(request);
            return new ScriptedModelServer.ScriptedAnswer(text, calls);
        });

        PatroniCluster? patroni = null;
        string connection, migrations;
        if (PatroniCluster.Missing() is null)
        {
            patroni = await PatroniCluster.StartAsync();
            (connection, migrations) = (patroni.ApplicationConnectionString, patroni.SuperuserConnectionString);
        }
        else
        {
            var cluster = await PostgresCluster.SharedAsync();
            var database = await cluster.CreateDatabaseAsync(nameof(SoakTests));
            (connection, migrations) = (cluster.ApplicationConnectionString(database), cluster.ConnectionString(database));
        }

        try
        {
            var options = new SoakOptions
            {
                Duration = TimeSpan.FromSeconds(90),
                Users = 12,
                Tenants = 3,
                KillEvery = TimeSpan.FromSeconds(50),
                FailoverAt = patroni is null ? null : TimeSpan.FromSeconds(25),
                ThinkMin = TimeSpan.FromMilliseconds(300),
                ThinkMax = TimeSpan.FromMilliseconds(1500),
                ServerDll = Path.Combine(AppContext.BaseDirectory, "HarnessServer.dll"),
                RepositoryRoot = HarnessApplication.RepositoryRoot,
                WorkFolder = work,
                ConnectionString = connection,
                MigrationsConnectionString = migrations,
                PatroniFolder = patroni?.Directory,
                Authority = issuer.Authority,
                Audience = OidcIssuer.Audience,
                ModelEndpoint = model.Endpoint,
                Token = (user, tenant, teams, roles) => issuer.CreateToken(user, tenant, teams, roles),
            };
            using var log = new StringWriter();
            var report = await new SoakRun(options, log).RunAsync(CancellationToken.None);
            output.WriteLine(log.ToString());
            output.WriteLine(report.Markdown);

            Assert.True(report.Violations.Count == 0, string.Join(Environment.NewLine, report.Violations));
            Assert.Contains("| kill | replica-a |", report.Markdown);
            Assert.True(patroni is null || report.Markdown.Contains("| failover |", StringComparison.Ordinal), report.Markdown);
        }
        finally
        {
            if (patroni is not null)
            {
                await patroni.DisposeAsync();
            }

            if (Directory.Exists(work))
            {
                Directory.Delete(work, recursive: true);
            }
        }
    }
}
