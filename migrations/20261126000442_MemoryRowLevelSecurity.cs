using HarnessServer.Data;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace HarnessServer.Migrations;

/// <summary>
/// Row-level security on memory_items as the second wall behind the query filters: <c>harness_app</c> sees and writes
/// only rows of the tenant its transaction named with <c>set_config('harness.tenant_id', tenant, true)</c>, and
/// nothing at all when none was named. FORCE makes it bind the table owner too (superusers still bypass RLS).
/// </summary>
[DbContext(typeof(HarnessDbContext))]
[Migration("20261126000442_MemoryRowLevelSecurity")]
public sealed class MemoryRowLevelSecurity : Migration
{
    protected override void Up(MigrationBuilder migrationBuilder)
    {
        migrationBuilder.Sql("""
            ALTER TABLE memory_items ENABLE ROW LEVEL SECURITY;
            ALTER TABLE memory_items FORCE ROW LEVEL SECURITY;
            CREATE POLICY memory_items_tenant ON memory_items TO harness_app
                USING (tenant_id = current_setting('harness.tenant_id', true))
                WITH CHECK (tenant_id = current_setting('harness.tenant_id', true));
            """);
    }

    protected override void Down(MigrationBuilder migrationBuilder)
    {
        migrationBuilder.Sql("""
            DROP POLICY memory_items_tenant ON memory_items;
            ALTER TABLE memory_items NO FORCE ROW LEVEL SECURITY;
            ALTER TABLE memory_items DISABLE ROW LEVEL SECURITY;
            """);
    }
}
