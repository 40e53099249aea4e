using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using static HarnessServer.Tests.Audit.AuditTestData;

namespace HarnessServer.Tests.Audit;

public sealed class AuditChainTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private AuditChain Chain => app.Service<AuditChain>();
    private AuditVerifier Verifier => app.Service<AuditVerifier>();

    [Fact]
    public async Task Concurrent_appends_across_tenants_get_gapless_seqs_and_a_valid_chain()
    {
        string[] tenants = ["conc-a", "conc-b", "conc-c"];
        var seqs = tenants.ToDictionary(t => t, _ => new System.Collections.Concurrent.ConcurrentBag<long>());

        await Parallel.ForEachAsync(Enumerable.Range(0, 500), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (i, ct) =>
        {
            var tenant = tenants[i % 3];
            var receipt = await Chain.AppendAsync(tenant, [Entry(i)], ct);
            seqs[tenant].Add(Assert.Single(receipt.Seqs));
        });

        foreach (var tenant in tenants)
        {
            var expected = Enumerable.Range(1, seqs[tenant].Count).Select(i => (long)i);
            Assert.Equal(expected, seqs[tenant].Order());
            var verification = await Verifier.VerifyAsync(tenant, default);
            Assert.True(verification.Valid, verification.Reason);
            Assert.Equal(seqs[tenant].Count, verification.Checked);
            Assert.Equal(seqs[tenant].Count, verification.HeadSeq);
        }
    }

    [Fact]
    public async Task First_event_links_to_64_zeros_and_entries_of_one_call_are_consecutive()
    {
        var receipt = await Chain.AppendAsync("first", [Entry(1), Entry(2), Entry(3)], default);

        Assert.Equal([1L, 2L, 3L], receipt.Seqs);
        Assert.Equal(new string('0', 64), await app.ScalarAsSuperuserAsync<string>("SELECT prev_hash FROM audit_events WHERE tenant_id = 'first' AND seq = 1"));
        Assert.True(await app.ScalarAsSuperuserAsync<bool>("""
            SELECT bool_and(e.prev_hash = p.hash) FROM audit_events e JOIN audit_events p ON p.tenant_id = e.tenant_id AND p.seq = e.seq - 1
            WHERE e.tenant_id = 'first'
            """));
    }

    [Fact]
    public async Task Two_writers_over_one_database_stay_linear()
    {
        await using var source = new NpgsqlDataSourceBuilder(app.ConnectionString + ";Options=-c role=harness_app").Build();
        var other = new AuditChain(source, TimeProvider.System, NullLogger<AuditChain>.Instance);
        await other.StartAsync(default);

        var writers = new[] { Chain, other };
        await Parallel.ForEachAsync(Enumerable.Range(0, 400), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, ct) =>
            await writers[i % 2].AppendAsync(i % 4 == 0 ? "two-writers-b" : "two-writers", [Entry(i)], ct));
        await other.StopAsync(default);

        var verification = await Verifier.VerifyAsync("two-writers", default);
        Assert.True(verification.Valid, verification.Reason);
        Assert.Equal(300, verification.HeadSeq);
        Assert.True((await Verifier.VerifyAsync("two-writers-b", default)).Valid);
    }

    [Fact]
    public async Task Work_and_its_events_commit_together()
    {
        await app.ExecuteAsSuperuserAsync("CREATE TABLE IF NOT EXISTS audit_scratch (id text primary key); GRANT ALL ON audit_scratch TO harness_app");

        var receipt = await Chain.AppendAsync("uow", async (unit, ct) =>
        {
            await using var command = new NpgsqlCommand("INSERT INTO audit_scratch VALUES ('committed')", unit.Connection, unit.Transaction);
            await command.ExecuteNonQueryAsync(ct);
            var users = await Microsoft.EntityFrameworkCore.EntityFrameworkQueryableExtensions.CountAsync(unit.Db.Users, ct);
            return (users, (IReadOnlyList<AuditEntry>)[Entry(1, type: "scratch.written")]);
        }, default);

        Assert.Equal(0, receipt.Result);
        Assert.Equal([1L], receipt.Seqs);
        Assert.Equal(1L, await app.ScalarAsSuperuserAsync<long>("SELECT count(*) FROM audit_scratch WHERE id = 'committed'"));
    }

    [Fact]
    public async Task Failing_work_reaches_its_caller_only_and_leaves_no_trace()
    {
        await app.ExecuteAsSuperuserAsync("CREATE TABLE IF NOT EXISTS audit_scratch (id text primary key); GRANT ALL ON audit_scratch TO harness_app");

        var failing = Chain.AppendAsync<int>("uow-fail", async (unit, ct) =>
        {
            await using var command = new NpgsqlCommand("INSERT INTO audit_scratch VALUES ('thrown')", unit.Connection, unit.Transaction);
            await command.ExecuteNonQueryAsync(ct);
            throw new InvalidOperationException("the tool broke");
        }, default);
        var others = Enumerable.Range(0, 20).Select(i => Chain.AppendAsync("uow-fail", [Entry(i)], default)).ToArray();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => failing);
        Assert.Equal("the tool broke", error.Message);
        await Task.WhenAll(others);
        Assert.Equal(0L, await app.ScalarAsSuperuserAsync<long>("SELECT count(*) FROM audit_scratch WHERE id = 'thrown'"));
        Assert.True((await Verifier.VerifyAsync("uow-fail", default)).Valid);
        Assert.Equal(20, (await Verifier.VerifyAsync("uow-fail", default)).HeadSeq);
    }

    [Fact]
    public async Task Appends_with_writes_commit_both_and_a_failing_write_fails_only_its_own_append()
    {
        await app.ExecuteAsSuperuserAsync("CREATE TABLE IF NOT EXISTS audit_scratch (id text primary key); GRANT ALL ON audit_scratch TO harness_app");
        await app.ExecuteAsSuperuserAsync("INSERT INTO audit_scratch VALUES ('taken') ON CONFLICT DO NOTHING");

        var good = Enumerable.Range(0, 20).Select(i =>
            Chain.AppendAsync("with-writes", [Entry(i)], [new AuditCommand("INSERT INTO audit_scratch VALUES ($1)", $"write-{i}")], default)).ToArray();
        var clash = Chain.AppendAsync("with-writes", [Entry(99, type: "scratch.clash")], [new AuditCommand("INSERT INTO audit_scratch VALUES ('taken')")], default);

        await Task.WhenAll(good);
        await Assert.ThrowsAsync<AuditUnavailableException>(() => clash);
        Assert.Equal(20L, await app.ScalarAsSuperuserAsync<long>("SELECT count(*) FROM audit_scratch WHERE id LIKE 'write-%'"));
        Assert.Equal(0L, await app.ScalarAsSuperuserAsync<long>("SELECT count(*) FROM audit_events WHERE tenant_id = 'with-writes' AND type = 'scratch.clash'"));
        var verification = await Verifier.VerifyAsync("with-writes", default);
        Assert.True(verification.Valid);
        Assert.Equal(20, verification.HeadSeq);
    }

    [Fact]
    public async Task When_the_audit_insert_fails_the_work_is_undone_and_the_caller_gets_audit_unavailable()
    {
        await app.ExecuteAsSuperuserAsync("""
            CREATE TABLE IF NOT EXISTS audit_scratch (id text primary key); GRANT ALL ON audit_scratch TO harness_app;
            CREATE OR REPLACE FUNCTION audit_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.type = 'refused.type' THEN RAISE EXCEPTION 'refused by test'; END IF; RETURN NEW; END $$;
            DROP TRIGGER IF EXISTS audit_test_refuse ON audit_events;
            CREATE TRIGGER audit_test_refuse BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_test_refuse();
            """);
        try
        {
            var unit = Chain.AppendAsync("fail-closed", async (u, ct) =>
            {
                await using var command = new NpgsqlCommand("INSERT INTO audit_scratch VALUES ('unaudited')", u.Connection, u.Transaction);
                await command.ExecuteNonQueryAsync(ct);
                return (true, (IReadOnlyList<AuditEntry>)[Entry(1, type: "refused.type")]);
            }, default);
            var plainRefused = Chain.AppendAsync("fail-closed", [Entry(2, type: "refused.type")], default);
            var fine = Enumerable.Range(0, 10).Select(i => Chain.AppendAsync("fail-closed", [Entry(i)], default)).ToArray();

            var problem = await Assert.ThrowsAsync<AuditUnavailableException>(() => unit);
            Assert.Equal(503, HarnessServer.Http.ProblemExceptionHandler.StatusOf(problem.Kind));
            Assert.Equal("audit_unavailable", problem.Code);
            await Assert.ThrowsAsync<AuditUnavailableException>(() => plainRefused);
            await Task.WhenAll(fine);
            Assert.Equal(0L, await app.ScalarAsSuperuserAsync<long>("SELECT count(*) FROM audit_scratch WHERE id = 'unaudited'"));
            var verification = await Verifier.VerifyAsync("fail-closed", default);
            Assert.True(verification.Valid, verification.Reason);
            Assert.Equal(10, verification.HeadSeq);
        }
        finally
        {
            await app.ExecuteAsSuperuserAsync("DROP TRIGGER IF EXISTS audit_test_refuse ON audit_events");
        }
    }

    [Fact]
    public async Task Application_connections_stay_harness_app_after_returning_to_the_pool()
    {
        var source = app.Service<NpgsqlDataSource>();
        for (var i = 0; i < 3; i++)
        {
            await using var connection = await source.OpenConnectionAsync();
            await using var command = new NpgsqlCommand("SELECT current_user", connection);
            Assert.Equal("harness_app", await command.ExecuteScalarAsync());
        }
    }

    [Fact]
    public async Task The_application_role_cannot_update_or_delete_events()
    {
        await Chain.AppendAsync("app-role", [Entry(1)], default);
        var source = app.Service<NpgsqlDataSource>();

        foreach (var sql in (string[])["UPDATE audit_events SET type = 'x' WHERE tenant_id = 'app-role'", "DELETE FROM audit_events WHERE tenant_id = 'app-role'", "TRUNCATE audit_events"])
        {
            await using var connection = await source.OpenConnectionAsync();
            await using var command = new NpgsqlCommand(sql, connection);
            var error = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
            Assert.Contains("permission denied", error.MessageText);
        }
    }

    [Theory]
    [InlineData("UPDATE audit_events SET type = 'x' WHERE tenant_id = 'superuser'")]
    [InlineData("DELETE FROM audit_events WHERE tenant_id = 'superuser'")]
    [InlineData("TRUNCATE audit_events")]
    [InlineData("TRUNCATE audit_checkpoints")]
    [InlineData("DELETE FROM audit_heads WHERE tenant_id = 'superuser'")]
    [InlineData("UPDATE audit_heads SET seq = 0 WHERE tenant_id = 'superuser'")]
    public async Task Triggers_refuse_changes_even_from_the_superuser(string sql)
    {
        await Chain.AppendAsync("superuser", [Entry(1)], default);

        var error = await Assert.ThrowsAsync<PostgresException>(() => app.ExecuteAsSuperuserAsync(sql));

        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
        Assert.Equal(0L, await app.ScalarAsSuperuserAsync<long>("SELECT count(*) FROM audit_events WHERE tenant_id = 'superuser' AND type = 'x'"));
        Assert.True((await Verifier.VerifyAsync("superuser", default)).Valid);
    }

    [Fact]
    public async Task Entries_that_break_the_contract_are_refused_before_anything_happens()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => Chain.AppendAsync("bad", [new AuditEntry("", Alice)], default));
        await Assert.ThrowsAsync<ArgumentException>(() => Chain.AppendAsync("bad", [new AuditEntry("x", new AuditActor(" ", "n"))], default));
        Assert.Null(await app.ScalarAsSuperuserAsync<object>("SELECT 1 FROM audit_heads WHERE tenant_id = 'bad'"));
    }
}
