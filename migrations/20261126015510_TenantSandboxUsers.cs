using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace HarnessServer.Migrations
{
    /// <summary>
    /// A sandbox index per tenant, so each tenant's commands run as their own host user (<c>TenantUidBase</c> + index).
    /// Adding the column evaluates its <c>nextval</c> default once per existing row, so every existing tenant gets one.
    /// </summary>
    public partial class TenantSandboxUsers : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateSequence(
                name: "tenant_sandbox_index",
                startValue: 0L,
                minValue: 0L);

            migrationBuilder.AddColumn<long>(
                name: "sandbox_index",
                table: "tenants",
                type: "bigint",
                nullable: false,
                defaultValueSql: "nextval('tenant_sandbox_index')");

            migrationBuilder.CreateIndex(
                name: "ix_tenants_sandbox_index",
                table: "tenants",
                column: "sandbox_index",
                unique: true);

            // Tenants are created by the application role (just in time, from tokens), which draws from the sequence.
            migrationBuilder.Sql("GRANT USAGE, SELECT ON SEQUENCE tenant_sandbox_index TO harness_app;");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_tenants_sandbox_index",
                table: "tenants");

            migrationBuilder.DropColumn(
                name: "sandbox_index",
                table: "tenants");

            migrationBuilder.DropSequence(
                name: "tenant_sandbox_index");
        }
    }
}
