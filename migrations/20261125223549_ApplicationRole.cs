using HarnessServer.Data;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace HarnessServer.Migrations;

/// <summary>
/// The restricted role the server's connections run as (startup option <c>role=harness_app</c>): ordinary rights on ordinary
/// tables, and only what each append-only table allows (granted by that table's own migration). The owner in the
/// connection string keeps DDL for migrations. Creating the role needs CREATEROLE (or a DBA who creates it first).
/// </summary>
[DbContext(typeof(HarnessDbContext))]
[Migration("20261125223549_ApplicationRole")]
public sealed class ApplicationRole : Migration
{
    protected override void Up(MigrationBuilder migrationBuilder)
    {
        migrationBuilder.Sql("""
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'harness_app') THEN
                    CREATE ROLE harness_app NOLOGIN;
                END IF;
                IF NOT pg_has_role(current_user, 'harness_app', 'MEMBER') THEN
                    EXECUTE format('GRANT harness_app TO %I', current_user);
                END IF;
            END $$;
            GRANT USAGE ON SCHEMA public TO harness_app;
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO harness_app;
            GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO harness_app;
            ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO harness_app;
            ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO harness_app;
            REVOKE ALL ON TABLE "__ef_migrations_history" FROM harness_app;
            """);
    }

    protected override void Down(MigrationBuilder migrationBuilder)
    {
        migrationBuilder.Sql("""
            ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM harness_app;
            ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM harness_app;
            REVOKE ALL ON ALL TABLES IN SCHEMA public FROM harness_app;
            REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM harness_app;
            REVOKE USAGE ON SCHEMA public FROM harness_app;
            """);
    }
}
