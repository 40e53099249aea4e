using HarnessServer.Data;
using HarnessServer.Tenancy;
using HarnessServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql;

namespace HarnessServer.Tests.Data;

public sealed class TenantSandboxIndexMigrationTests
{
    [Fact]
    public async Task Tenants_from_before_the_migration_each_get_their_own_sandbox_index_and_new_ones_follow()
    {
        var cluster = await PostgresCluster.SharedAsync();
        var builder = new NpgsqlDataSourceBuilder(cluster.ConnectionString(await cluster.CreateDatabaseAsync("sandbox_index_migration")));
        builder.UseVector();
        await using var source = builder.Build();
        var options = new DbContextOptionsBuilder<HarnessDbContext>();
        DataExtensions.Configure(options, source);
        await using var db = new HarnessDbContext(options.Options, new TenantContext());
        var migrator = db.GetService<IMigrator>();

        await migrator.MigrateAsync("20261126012955_ToolCallDigest");
        await db.Database.ExecuteSqlRawAsync("INSERT INTO tenants (id, created_at) VALUES ('old-a', now()), ('old-b', now()), ('old-c', now())");
        await migrator.MigrateAsync();
        await using (var insert = source.CreateCommand(TenantConfiguration.InsertIfNewSql))
        {
            insert.Parameters.Add(new NpgsqlParameter { Value = "new-d" });
            insert.Parameters.Add(new NpgsqlParameter { Value = DateTimeOffset.UtcNow });
            await insert.ExecuteNonQueryAsync();
        }

        var indexes = await db.Tenants.ToDictionaryAsync(t => t.Id, t => t.SandboxIndex);
        long[] old = [indexes["old-a"], indexes["old-b"], indexes["old-c"]];
        Assert.Equal([0, 1, 2], old.Order());
        Assert.Equal(3, indexes["new-d"]);
    }
}
