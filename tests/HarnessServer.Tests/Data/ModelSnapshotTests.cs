using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.EntityFrameworkCore.Migrations.Operations;

namespace HarnessServer.Tests.Data;

/// <summary>
/// The model the code builds is the one the migrations create: a refactoring that moves entities or their
/// configurations between folders must not change a table, column, index or key behind the migrations' back.
/// </summary>
public sealed class ModelSnapshotTests
{
    [Fact]
    public void The_model_has_no_changes_the_migrations_do_not_make()
    {
        using var db = new DesignTimeDbContextFactory().CreateDbContext([]);
        var snapshot = db.GetService<IMigrationsAssembly>().ModelSnapshot?.Model
            ?? throw new InvalidOperationException("The server carries no model snapshot.");
        var initialized = db.GetService<IModelRuntimeInitializer>().Initialize(snapshot);
        var differences = db.GetService<IMigrationsModelDiffer>().GetDifferences(
            initialized.GetRelationalModel(), db.GetService<IDesignTimeModel>().Model.GetRelationalModel());

        Assert.True(differences.Count == 0,
            "The EF model differs from migrations/HarnessDbContextModelSnapshot.cs (add a migration, or undo the change):\n" +
            string.Join('\n', differences.Select(Describe)));
    }

    private static string Describe(MigrationOperation operation) => operation switch
    {
        RenameTableOperation r => $"rename table {r.Name} -> {r.NewName}",
        CreateTableOperation c => $"create table {c.Name}",
        DropTableOperation d => $"drop table {d.Name}",
        AddColumnOperation a => $"add column {a.Table}.{a.Name}",
        DropColumnOperation d => $"drop column {d.Table}.{d.Name}",
        AlterColumnOperation a => $"alter column {a.Table}.{a.Name}",
        CreateIndexOperation i => $"create index {i.Name} on {i.Table}",
        DropIndexOperation i => $"drop index {i.Name} on {i.Table}",
        DropForeignKeyOperation f => $"drop foreign key {f.Name} on {f.Table}",
        AddForeignKeyOperation f => $"add foreign key {f.Name} on {f.Table}",
        _ => operation.GetType().Name,
    };
}
