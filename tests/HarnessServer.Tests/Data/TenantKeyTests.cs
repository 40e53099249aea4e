using HarnessServer.Data;
using HarnessServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;

namespace HarnessServer.Tests.Data;

/// <summary>
/// Citus distributes a table by one column and requires that column in every primary key, unique index and foreign
/// key between distributed tables. docs/sharding.md names every tenant-owned table and every key of them that does
/// not include <c>tenant_id</c> yet (with what the Citus migration changes): these tests hold the page to the model.
/// </summary>
public sealed class TenantKeyTests
{
    private static readonly string Page = File.ReadAllText(Path.Combine(HarnessApplication.RepositoryRoot, "docs", "sharding.md"));

    private static IModel Model()
    {
        using var db = new DesignTimeDbContextFactory().CreateDbContext([]);
        return db.GetService<IDesignTimeModel>().Model;
    }

    private static bool IsTenantOwned(IEntityType entity) => entity.FindProperty(nameof(ITenantOwned.TenantId)) is not null;

    private static string Columns(IEnumerable<IProperty> properties) =>
        string.Join(", ", properties.Select(p => $"`{p.GetColumnName()}`"));

    /// <summary>Every key of a tenant-owned table without <c>tenant_id</c>, in the words the page uses.</summary>
    private static SortedSet<string> KeysWithoutTenant()
    {
        var keys = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var entity in Model().GetEntityTypes().Where(IsTenantOwned))
        {
            var table = entity.GetTableName();
            bool Lacks(IEnumerable<IProperty> properties) => properties.All(p => p.Name != nameof(ITenantOwned.TenantId));
            if (entity.FindPrimaryKey() is { } primary && Lacks(primary.Properties))
            {
                keys.Add($"`{table}`: primary key ({Columns(primary.Properties)})");
            }

            foreach (var index in entity.GetIndexes().Where(i => i.IsUnique && Lacks(i.Properties)))
            {
                keys.Add($"`{table}`: unique index ({Columns(index.Properties)})");
            }

            foreach (var foreign in entity.GetForeignKeys().Where(f => IsTenantOwned(f.PrincipalEntityType) && Lacks(f.Properties)))
            {
                keys.Add($"`{table}`: foreign key ({Columns(foreign.Properties)}) to `{foreign.PrincipalEntityType.GetTableName()}` ({Columns(foreign.PrincipalKey.Properties)})");
            }
        }

        return keys;
    }

    [Fact]
    public void The_sharding_page_names_every_tenant_owned_table_as_distributed_by_tenant_id()
    {
        var missing = Model().GetEntityTypes().Where(IsTenantOwned).Select(e => e.GetTableName()!)
            .Where(table => !Page.Contains($"| `{table}` |", StringComparison.Ordinal)).ToList();

        Assert.True(missing.Count == 0, "docs/sharding.md does not list these tenant-owned tables: " + string.Join(", ", missing));
    }

    [Fact]
    public void The_tenants_table_is_the_only_table_without_tenant_id_that_tenant_tables_reference()
    {
        var referenced = Model().GetEntityTypes().Where(IsTenantOwned)
            .SelectMany(e => e.GetForeignKeys()).Select(f => f.PrincipalEntityType)
            .Where(principal => !IsTenantOwned(principal)).Select(p => p.GetTableName()).Distinct().ToList();

        Assert.Equal(["tenants"], referenced);
    }

    [Fact]
    public void Every_key_of_a_tenant_owned_table_without_tenant_id_is_on_the_sharding_page_and_nothing_more()
    {
        var keys = KeysWithoutTenant();
        var section = Page[Page.IndexOf("\n## Keys without tenant_id", StringComparison.Ordinal)..];
        section = section[..(section.IndexOf("\n## ", 1, StringComparison.Ordinal) is var next and > 0 ? next : section.Length)];
        var listed = section.Split('\n').Select(line => line.Trim())
            .Where(line => line.StartsWith("- `", StringComparison.Ordinal) && line.Contains("`: ", StringComparison.Ordinal))
            .Select(line => line[2..].Split(" — ")[0].TrimEnd())
            .ToHashSet(StringComparer.Ordinal);

        Assert.True(keys.SetEquals(listed),
            "docs/sharding.md (section 'Keys without tenant_id') and the model disagree.\nIn the model, not on the page:\n" +
            string.Join('\n', keys.Except(listed)) + "\nOn the page, not in the model:\n" + string.Join('\n', listed.Except(keys)));
    }
}
