using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace HarnessServer.Migrations
{
    /// <inheritdoc />
    public partial class Agents : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "agent_turns",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    session_id = table.Column<Guid>(type: "uuid", nullable: false),
                    user_id = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    user_name = table.Column<string>(type: "character varying(400)", maxLength: 400, nullable: false),
                    user_teams = table.Column<string[]>(type: "text[]", nullable: false),
                    user_roles = table.Column<string[]>(type: "text[]", nullable: false),
                    status = table.Column<string>(type: "character varying(30)", maxLength: 30, nullable: false),
                    iterations = table.Column<int>(type: "integer", nullable: false),
                    last_step = table.Column<string>(type: "character varying(220)", maxLength: 220, nullable: false),
                    waiting_on_call_id = table.Column<Guid>(type: "uuid", nullable: true),
                    reply = table.Column<string>(type: "text", nullable: true),
                    error = table.Column<string>(type: "character varying(4000)", maxLength: 4000, nullable: true),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    updated_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    xmin = table.Column<uint>(type: "xid", rowVersion: true, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_agent_turns", x => x.id);
                    table.ForeignKey(
                        name: "fk_agent_turns_sessions_session_id",
                        column: x => x.session_id,
                        principalTable: "sessions",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "model_calls",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    session_id = table.Column<Guid>(type: "uuid", nullable: false),
                    turn_id = table.Column<Guid>(type: "uuid", nullable: false),
                    user_id = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    model = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    purpose = table.Column<string>(type: "character varying(20)", maxLength: 20, nullable: false),
                    input_tokens = table.Column<int>(type: "integer", nullable: false),
                    output_tokens = table.Column<int>(type: "integer", nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_model_calls", x => x.id);
                    table.ForeignKey(
                        name: "fk_model_calls_sessions_session_id",
                        column: x => x.session_id,
                        principalTable: "sessions",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "workspace_checkpoints",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    session_id = table.Column<Guid>(type: "uuid", nullable: false),
                    tool_call_id = table.Column<Guid>(type: "uuid", nullable: false),
                    tool = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    tree_hash = table.Column<string>(type: "character(64)", fixedLength: true, maxLength: 64, nullable: false),
                    files = table.Column<int>(type: "integer", nullable: false),
                    bytes = table.Column<long>(type: "bigint", nullable: false),
                    skipped = table.Column<int>(type: "integer", nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    restored_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_workspace_checkpoints", x => x.id);
                    table.ForeignKey(
                        name: "fk_workspace_checkpoints_sessions_session_id",
                        column: x => x.session_id,
                        principalTable: "sessions",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                    table.ForeignKey(
                        name: "fk_workspace_checkpoints_tool_calls_tool_call_id",
                        column: x => x.tool_call_id,
                        principalTable: "tool_calls",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "agent_messages",
                columns: table => new
                {
                    seq = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    tenant_id = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    session_id = table.Column<Guid>(type: "uuid", nullable: false),
                    turn_id = table.Column<Guid>(type: "uuid", nullable: false),
                    role = table.Column<string>(type: "character varying(20)", maxLength: 20, nullable: false),
                    content = table.Column<string>(type: "text", nullable: true),
                    tool_calls = table.Column<string>(type: "jsonb", nullable: true),
                    tool_call_id = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: true),
                    tool_name = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: true),
                    call_status = table.Column<string>(type: "character varying(30)", maxLength: 30, nullable: true),
                    pipeline_call_id = table.Column<Guid>(type: "uuid", nullable: true),
                    tokens = table.Column<int>(type: "integer", nullable: false),
                    through_seq = table.Column<long>(type: "bigint", nullable: true),
                    rolled_back = table.Column<bool>(type: "boolean", nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_agent_messages", x => x.seq);
                    table.ForeignKey(
                        name: "fk_agent_messages_agent_turns_turn_id",
                        column: x => x.turn_id,
                        principalTable: "agent_turns",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                    table.ForeignKey(
                        name: "fk_agent_messages_sessions_session_id",
                        column: x => x.session_id,
                        principalTable: "sessions",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "ix_agent_messages_session_id",
                table: "agent_messages",
                column: "session_id");

            migrationBuilder.CreateIndex(
                name: "ix_agent_messages_tenant_id_session_id_seq",
                table: "agent_messages",
                columns: new[] { "tenant_id", "session_id", "seq" });

            migrationBuilder.CreateIndex(
                name: "ix_agent_messages_turn_id",
                table: "agent_messages",
                column: "turn_id");

            migrationBuilder.CreateIndex(
                name: "ix_agent_turns_session_id",
                table: "agent_turns",
                column: "session_id");

            migrationBuilder.CreateIndex(
                name: "ix_agent_turns_status",
                table: "agent_turns",
                column: "status",
                filter: "status IN ('Running', 'WaitingForApproval', 'Paused')");

            migrationBuilder.CreateIndex(
                name: "ix_agent_turns_tenant_id_session_id_created_at",
                table: "agent_turns",
                columns: new[] { "tenant_id", "session_id", "created_at" });

            migrationBuilder.CreateIndex(
                name: "ix_model_calls_session_id",
                table: "model_calls",
                column: "session_id");

            migrationBuilder.CreateIndex(
                name: "ix_model_calls_tenant_id_session_id",
                table: "model_calls",
                columns: new[] { "tenant_id", "session_id" });

            migrationBuilder.CreateIndex(
                name: "ix_model_calls_tenant_id_user_id_created_at",
                table: "model_calls",
                columns: new[] { "tenant_id", "user_id", "created_at" });

            migrationBuilder.CreateIndex(
                name: "ix_workspace_checkpoints_session_id",
                table: "workspace_checkpoints",
                column: "session_id");

            migrationBuilder.CreateIndex(
                name: "ix_workspace_checkpoints_tenant_id_session_id_created_at",
                table: "workspace_checkpoints",
                columns: new[] { "tenant_id", "session_id", "created_at" });

            migrationBuilder.CreateIndex(
                name: "ix_workspace_checkpoints_tool_call_id",
                table: "workspace_checkpoints",
                column: "tool_call_id");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "agent_messages");

            migrationBuilder.DropTable(
                name: "model_calls");

            migrationBuilder.DropTable(
                name: "workspace_checkpoints");

            migrationBuilder.DropTable(
                name: "agent_turns");
        }
    }
}
