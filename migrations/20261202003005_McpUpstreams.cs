using System;
using System.Text.Json;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace HarnessServer.Migrations
{
    /// <inheritdoc />
    public partial class McpUpstreams : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "mcp_upstreams",
                columns: table => new
                {
                    tenant_id = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    name = table.Column<string>(type: "character varying(40)", maxLength: 40, nullable: false),
                    transport = table.Column<string>(type: "character varying(10)", maxLength: 10, nullable: false),
                    url = table.Column<string>(type: "character varying(2048)", maxLength: 2048, nullable: true),
                    command = table.Column<string[]>(type: "text[]", nullable: true),
                    protected_credential = table.Column<string>(type: "character varying(16384)", maxLength: 16384, nullable: true),
                    timeout_seconds = table.Column<int>(type: "integer", nullable: false),
                    created_by = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    refreshed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_mcp_upstreams", x => new { x.tenant_id, x.name });
                    table.ForeignKey(
                        name: "fk_mcp_upstreams_tenants_tenant_id",
                        column: x => x.tenant_id,
                        principalTable: "tenants",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "mcp_tool_changes",
                columns: table => new
                {
                    tenant_id = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    tool = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    server = table.Column<string>(type: "character varying(40)", maxLength: 40, nullable: false),
                    upstream_name = table.Column<string>(type: "character varying(128)", maxLength: 128, nullable: false),
                    description = table.Column<string>(type: "character varying(2000)", maxLength: 2000, nullable: false),
                    schema = table.Column<JsonDocument>(type: "jsonb", nullable: false),
                    is_new = table.Column<bool>(type: "boolean", nullable: false),
                    detected_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_mcp_tool_changes", x => new { x.tenant_id, x.tool });
                    table.ForeignKey(
                        name: "fk_mcp_tool_changes_mcp_upstreams_tenant_id_server",
                        columns: x => new { x.tenant_id, x.server },
                        principalTable: "mcp_upstreams",
                        principalColumns: new[] { "tenant_id", "name" },
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "ix_mcp_tool_changes_tenant_id_server",
                table: "mcp_tool_changes",
                columns: new[] { "tenant_id", "server" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "mcp_tool_changes");

            migrationBuilder.DropTable(
                name: "mcp_upstreams");
        }
    }
}
