using System.Diagnostics;
using System.Text;
using HarnessServer.Tests.Infrastructure;
using Npgsql;

namespace HarnessServer.Tests.Data;

/// <summary>
/// <c>HarnessServer --migrate</c> is the release step of a deployment (the Kubernetes Job under <c>deploy/</c>): it
/// applies every migration as the schema owner, grants the server's login its role, and exits without serving.
/// </summary>
public sealed class MigrateCommandTests
{
    [Fact]
    public async Task Migrate_applies_every_migration_to_an_empty_database_and_exits_without_serving()
    {
        var cluster = await PostgresCluster.SharedAsync();
        var database = await cluster.CreateDatabaseAsync("migrate_command");
        var data = Directory.CreateTempSubdirectory("harness-migrate-");
        try
        {
            var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "HarnessServer.dll"), "--migrate"])
            {
                WorkingDirectory = HarnessApplication.RepositoryRoot,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                Environment =
                {
                    ["ASPNETCORE_ENVIRONMENT"] = "Production",
                    ["Urls"] = "http://127.0.0.1:0",
                    ["ConnectionStrings__Harness"] = cluster.ApplicationConnectionString(database),
                    ["ConnectionStrings__HarnessMigrations"] = cluster.ConnectionString(database),
                    ["Authentication__Authority"] = "https://issuer.invalid/",
                    ["Authentication__Audience"] = OidcIssuer.Audience,
                    ["Harness__WorkspacesPath"] = Path.Combine(data.FullName, "workspaces"),
                    ["Harness__Audit__SigningKeyPath"] = Path.Combine(data.FullName, "audit-signing-key.pem"),
                    ["Harness__Audit__GenerateSigningKey"] = "true",
                },
            };
            using var process = Process.Start(start)!;
            var output = new StringBuilder();
            process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
            process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            await process.WaitForExitAsync(timeout.Token);

            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {output}");
            Assert.DoesNotContain("Now listening", output.ToString(), StringComparison.Ordinal);
            var expected = typeof(HarnessServer.Migrations.ApprovalPreview).Assembly.GetTypes()
                .Count(t => t.GetCustomAttributes(typeof(Microsoft.EntityFrameworkCore.Migrations.MigrationAttribute), false).Length > 0);
            await using var connection = new NpgsqlConnection(cluster.ConnectionString(database));
            await connection.OpenAsync();
            await using var applied = new NpgsqlCommand("SELECT count(*) FROM __ef_migrations_history", connection);
            Assert.Equal((long)expected, await applied.ExecuteScalarAsync());
            await using var member = new NpgsqlCommand($"SELECT pg_has_role('{PostgresCluster.ApplicationLogin}', 'harness_app', 'MEMBER')", connection);
            Assert.Equal(true, await member.ExecuteScalarAsync());
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }
}
