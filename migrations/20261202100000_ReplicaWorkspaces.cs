using HarnessServer.Data;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace HarnessServer.Migrations;

/// <summary>
/// The replicas' workspaces markers (<c>Sandbox/WorkspaceSharing.cs</c>): one row per running replica, refreshed by
/// its heartbeat, so <c>/readyz</c> can tell whether every live replica's marker file is visible in its own folder.
/// Written with raw SQL by the server, so it is no entity of the model; shared by all tenants.
/// </summary>
[DbContext(typeof(HarnessDbContext))]
[Migration("20261202100000_ReplicaWorkspaces")]
public sealed class ReplicaWorkspaces : Migration
{
    protected override void Up(MigrationBuilder migrationBuilder)
    {
        migrationBuilder.Sql("""
            CREATE TABLE replica_workspaces (
                replica_id uuid PRIMARY KEY,
                host text NOT NULL,
                workspaces_path text NOT NULL,
                registered_at timestamptz NOT NULL,
                seen_at timestamptz NOT NULL
            );
            GRANT SELECT, INSERT, UPDATE, DELETE ON replica_workspaces TO harness_app;
            """);
    }

    protected override void Down(MigrationBuilder migrationBuilder)
    {
        migrationBuilder.Sql("DROP TABLE replica_workspaces;");
    }
}
