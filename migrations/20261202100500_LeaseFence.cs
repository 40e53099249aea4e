using HarnessServer.Data;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace HarnessServer.Migrations;

/// <summary>
/// The fence of a leased call's finishing write as an error: the write rides in the audit writer's group commit with
/// other callers' writes, where a write that finds nothing to finish must fail its own append (its executed event
/// included) instead of committing it. <c>HL001</c> is <c>PipelineRows.LeaseFenced</c>.
/// </summary>
[DbContext(typeof(HarnessDbContext))]
[Migration("20261202100500_LeaseFence")]
public sealed class LeaseFence : Migration
{
    protected override void Up(MigrationBuilder migrationBuilder)
    {
        migrationBuilder.Sql("""
            CREATE FUNCTION harness_lease_fence(finished bigint) RETURNS bigint LANGUAGE plpgsql AS $$
            BEGIN
                IF finished = 0 THEN
                    RAISE EXCEPTION 'the call is no longer running under this execution lease' USING ERRCODE = 'HL001';
                END IF;
                RETURN finished;
            END $$;
            """);
    }

    protected override void Down(MigrationBuilder migrationBuilder)
    {
        migrationBuilder.Sql("DROP FUNCTION harness_lease_fence(bigint);");
    }
}
