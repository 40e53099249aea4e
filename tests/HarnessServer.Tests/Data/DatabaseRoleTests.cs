using HarnessServer.Data;
using HarnessServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Npgsql;

namespace HarnessServer.Tests.Data;

public sealed class DatabaseRoleTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    [Fact]
    public async Task Application_connections_run_as_the_restricted_role_even_after_pool_reset()
    {
        var source = app.Service<NpgsqlDataSource>();

        for (var i = 0; i < 3; i++)
        {
            await using var connection = await source.OpenConnectionAsync();
            await using var command = new NpgsqlCommand("SELECT current_user", connection);
            Assert.Equal(DataExtensions.ApplicationRole, await command.ExecuteScalarAsync());
            // Whatever a previous user of the pooled connection did, the reset returns it to the startup role.
            await using var reset = new NpgsqlCommand("RESET ROLE", connection);
            await reset.ExecuteNonQueryAsync();
        }
    }

    // Issue 16, finding 4: the server logged in as the schema owner with role=harness_app, and SET ROLE NONE returned
    // to the owner, which may disable the audit triggers. Its own login gains nothing by leaving the role.
    [Theory]
    [InlineData("ALTER TABLE audit_events DISABLE TRIGGER ALL")]
    [InlineData("UPDATE audit_events SET actor_name = 'forged'")]
    [InlineData("DELETE FROM audit_events")]
    [InlineData("DELETE FROM audit_heads")]
    [InlineData("TRUNCATE audit_events")]
    [InlineData("DROP TABLE users")]
    [InlineData("SET ROLE postgres")]
    public async Task Leaving_the_restricted_role_gains_nothing(string sql)
    {
        await using var connection = await app.Service<NpgsqlDataSource>().OpenConnectionAsync();
        await using (var leave = new NpgsqlCommand("SET ROLE NONE", connection))
        {
            await leave.ExecuteNonQueryAsync();
        }

        await using (var who = new NpgsqlCommand("SELECT current_user", connection))
        {
            Assert.Equal(PostgresCluster.ApplicationLogin, await who.ExecuteScalarAsync());
        }

        await using var command = new NpgsqlCommand(sql, connection);
        var error = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());

        Assert.True(error.SqlState is PostgresErrorCodes.InsufficientPrivilege, $"{error.SqlState}: {error.MessageText}");
    }

    [Fact]
    public async Task A_server_logging_in_as_the_schema_owner_is_refused_outside_Development()
    {
        await using var owner = new OwnerLoginApplication(app);

        var error = Assert.ThrowsAny<Exception>(() => owner.Services);

        Assert.Contains("SET ROLE NONE would undo", error.ToString());
    }

    private sealed class OwnerLoginApplication(HarnessApplication app) : Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactory<Program>
    {
        protected override void ConfigureWebHost(Microsoft.AspNetCore.Hosting.IWebHostBuilder builder)
        {
            builder.UseEnvironment("Production");
            builder.UseContentRoot(HarnessApplication.RepositoryRoot);
            builder.UseSetting("ConnectionStrings:Harness", app.ConnectionString);
            builder.UseSetting("Authentication:Authority", app.Issuer.Authority);
            builder.UseSetting("Authentication:RequireHttpsMetadata", "false");
            builder.UseSetting("Harness:MigrateOnStart", "false");
            builder.UseSetting("Harness:WorkspacesPath", Path.Combine(app.DataRoot, "owner-workspaces"));
            builder.UseSetting("Harness:PoliciesPath", Path.Combine(app.DataRoot, "owner-policies"));
            builder.UseSetting("Harness:Audit:SigningKeyPath", Path.Combine(app.DataRoot, "audit-signing-key.pem"));
        }
    }

    [Fact]
    public async Task The_restricted_role_cannot_change_the_schema()
    {
        await using var connection = await app.Service<NpgsqlDataSource>().OpenConnectionAsync();
        await using var command = new NpgsqlCommand("DROP TABLE users", connection);

        var error = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());

        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
    }
}
