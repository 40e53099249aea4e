using HarnessServer.Data;
using HarnessServer.Tests.Infrastructure;
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

    [Fact]
    public async Task The_restricted_role_cannot_change_the_schema()
    {
        await using var connection = await app.Service<NpgsqlDataSource>().OpenConnectionAsync();
        await using var command = new NpgsqlCommand("DROP TABLE users", connection);

        var error = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());

        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
    }
}
