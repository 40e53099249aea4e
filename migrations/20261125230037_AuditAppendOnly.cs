using HarnessServer.Data;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace HarnessServer.Migrations;

/// <summary>
/// Makes the audit tables append-only twice over: <c>harness_app</c> loses UPDATE, DELETE and TRUNCATE on events and
/// checkpoints (and DELETE, TRUNCATE on heads), and triggers refuse those changes from any role, the owner included.
/// Only someone who can disable triggers (a superuser or the owner) can still tamper, and the chain and signed
/// checkpoints exist to expose exactly that.
/// </summary>
[DbContext(typeof(HarnessDbContext))]
[Migration("20261125230037_AuditAppendOnly")]
public sealed class AuditAppendOnly : Migration
{
    protected override void Up(MigrationBuilder migrationBuilder)
    {
        migrationBuilder.Sql("""
            REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM harness_app;
            REVOKE DELETE, TRUNCATE ON audit_heads FROM harness_app;
            GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO harness_app;
            GRANT SELECT, INSERT, UPDATE ON audit_heads TO harness_app;

            CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
            END $$;

            CREATE FUNCTION audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.seq < OLD.seq OR NEW.tenant_id <> OLD.tenant_id THEN
                    RAISE EXCEPTION 'audit_heads only move forward' USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN NEW;
            END $$;

            CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
                FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
            CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
                FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
            CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
                FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
            CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
                FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
            CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
                FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
            CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads
                FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
            CREATE TRIGGER audit_heads_forward_only BEFORE UPDATE ON audit_heads
                FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only();
            """);
    }

    protected override void Down(MigrationBuilder migrationBuilder)
    {
        migrationBuilder.Sql("""
            DROP TRIGGER audit_heads_forward_only ON audit_heads;
            DROP TRIGGER audit_heads_no_truncate ON audit_heads;
            DROP TRIGGER audit_heads_no_delete ON audit_heads;
            DROP TRIGGER audit_checkpoints_no_truncate ON audit_checkpoints;
            DROP TRIGGER audit_checkpoints_no_change ON audit_checkpoints;
            DROP TRIGGER audit_events_no_truncate ON audit_events;
            DROP TRIGGER audit_events_no_change ON audit_events;
            DROP FUNCTION audit_head_forward_only();
            DROP FUNCTION audit_refuse_change();
            GRANT UPDATE, DELETE ON audit_events, audit_checkpoints, audit_heads TO harness_app;
            """);
    }
}
