using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace HarnessServer.Migrations
{
    /// <inheritdoc />
    public partial class AuditFilterIndexes : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateIndex(
                name: "ix_audit_events_tenant_id_actor_id_seq",
                table: "audit_events",
                columns: new[] { "tenant_id", "actor_id", "seq" });

            migrationBuilder.CreateIndex(
                name: "ix_audit_events_tenant_id_tool_seq",
                table: "audit_events",
                columns: new[] { "tenant_id", "tool", "seq" });

            migrationBuilder.CreateIndex(
                name: "ix_audit_events_tenant_id_type_seq",
                table: "audit_events",
                columns: new[] { "tenant_id", "type", "seq" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_audit_events_tenant_id_actor_id_seq",
                table: "audit_events");

            migrationBuilder.DropIndex(
                name: "ix_audit_events_tenant_id_tool_seq",
                table: "audit_events");

            migrationBuilder.DropIndex(
                name: "ix_audit_events_tenant_id_type_seq",
                table: "audit_events");
        }
    }
}
