using System.Buffers;
using HarnessServer.Audit;
using HarnessServer.Tests.Infrastructure;
using static HarnessServer.Tests.Audit.AuditTestData;

namespace HarnessServer.Tests.Audit;

/// <summary>Each tamper is done as the superuser with triggers bypassed; verify must name the first bad seq.</summary>
public sealed class AuditTamperTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private async Task<string> ChainOf20Async(string tenant)
    {
        var chain = app.Service<AuditChain>();
        await chain.AppendAsync(tenant, Enumerable.Range(1, 10).Select(i => Entry(i)).ToList(), default);
        await chain.AppendAsync(tenant, Enumerable.Range(11, 10).Select(i => Entry(i, tool: null, effect: "deny")).ToList(), default);
        Assert.True((await VerifyAsync(tenant)).Valid);
        return tenant;
    }

    private Task<AuditVerification> VerifyAsync(string tenant) => app.Service<AuditVerifier>().VerifyAsync(tenant, default);

    [Theory]
    [InlineData("actor_name = 'Mallory'")]
    [InlineData("type = 'tool.denied'")]
    [InlineData("tool = 'shell.exec'")]
    [InlineData("session_id = NULL")]
    [InlineData("at = at + interval '1 microsecond'")]
    [InlineData("decision = jsonb_set(decision::jsonb, '{effect}', '\"deny\"')::json")]
    [InlineData("decision = decision::jsonb::json")]
    [InlineData("payload = payload::jsonb::json")]
    [InlineData("payload_hash = repeat('a', 64)")]
    [InlineData("hash = repeat('b', 64)")]
    public async Task An_edited_field_is_reported_at_its_seq(string assignment)
    {
        var tenant = await ChainOf20Async($"edit-{Math.Abs(assignment.GetHashCode())}");

        await TamperAsync(app, $"UPDATE audit_events SET {assignment} WHERE tenant_id = '{tenant}' AND seq = 7");

        var verification = await VerifyAsync(tenant);
        Assert.False(verification.Valid);
        Assert.Equal(7, verification.FirstInvalidSeq);
        Assert.Equal(6, verification.Checked);
    }

    [Fact]
    public async Task An_edited_payload_is_reported_and_a_redacted_one_is_not()
    {
        var tenant = await ChainOf20Async("payload");

        await TamperAsync(app, $"UPDATE audit_events SET payload = NULL WHERE tenant_id = '{tenant}' AND seq = 3");
        Assert.True((await VerifyAsync(tenant)).Valid);

        await TamperAsync(app, $"UPDATE audit_events SET payload = jsonb_set(payload::jsonb, '{{status}}', '\"failed\"')::json WHERE tenant_id = '{tenant}' AND seq = 5");
        var verification = await VerifyAsync(tenant);
        Assert.Equal(5, verification.FirstInvalidSeq);
        Assert.Contains("payloadHash", verification.Reason);
    }

    [Fact]
    public async Task A_deleted_middle_event_is_reported_as_missing()
    {
        var tenant = await ChainOf20Async("delete");

        await TamperAsync(app, $"DELETE FROM audit_events WHERE tenant_id = '{tenant}' AND seq = 10");

        var verification = await VerifyAsync(tenant);
        Assert.Equal(10, verification.FirstInvalidSeq);
        Assert.Contains("missing", verification.Reason);
    }

    [Fact]
    public async Task Two_swapped_events_are_reported_at_the_first()
    {
        var tenant = await ChainOf20Async("swap");

        await TamperAsync(app, $"""
            UPDATE audit_events e SET at = o.at, actor_id = o.actor_id, actor_name = o.actor_name, session_id = o.session_id,
                type = o.type, tool = o.tool, decision = o.decision, payload = o.payload, payload_hash = o.payload_hash,
                prev_hash = o.prev_hash, hash = o.hash
            FROM audit_events o
            WHERE e.tenant_id = '{tenant}' AND o.tenant_id = '{tenant}' AND ((e.seq = 4 AND o.seq = 12) OR (e.seq = 12 AND o.seq = 4))
            """);

        Assert.Equal(4, (await VerifyAsync(tenant)).FirstInvalidSeq);
    }

    [Fact]
    public async Task A_forged_event_is_reported_whether_or_not_its_hash_is_well_formed()
    {
        var tenant = await ChainOf20Async("forge");
        var head = await app.ScalarAsSuperuserAsync<string>($"SELECT hash FROM audit_events WHERE tenant_id = '{tenant}' AND seq = 20");

        // A correctly chained forgery: the content is hashed exactly as the server would, but the head row was not moved.
        var payloadHash = AuditHash.Hex("null"u8);
        var fields = new AuditEventFields(21, tenant, "2026-01-01T00:00:00.000000Z", "mallory", "Mallory", null, "tool.executed", null,
            default, payloadHash, head!);
        var hash = AuditHash.Compute(fields, new ArrayBufferWriter<byte>());
        await TamperAsync(app, $"""
            INSERT INTO audit_events (tenant_id, seq, at, actor_id, actor_name, type, payload, payload_hash, prev_hash, hash)
            VALUES ('{tenant}', 21, '2026-01-01T00:00:00Z', 'mallory', 'Mallory', 'tool.executed', 'null', '{payloadHash}', '{head}', '{hash}')
            """);
        var verification = await VerifyAsync(tenant);
        Assert.Equal(21, verification.FirstInvalidSeq);
        Assert.Contains("outside the audit writer", verification.Reason);

        await TamperAsync(app, $"""
            INSERT INTO audit_events (tenant_id, seq, at, actor_id, actor_name, type, payload, payload_hash, prev_hash, hash)
            VALUES ('{tenant}', 22, now(), 'mallory', 'Mallory', 'tool.executed', 'null', '{payloadHash}', '{hash}', repeat('c', 64));
            UPDATE audit_heads SET seq = 22, hash = repeat('c', 64) WHERE tenant_id = '{tenant}';
            """);
        Assert.Equal(22, (await VerifyAsync(tenant)).FirstInvalidSeq);
    }

    [Fact]
    public async Task A_tail_removed_after_a_signed_checkpoint_is_reported_even_when_the_head_is_rewound()
    {
        var tenant = await ChainOf20Async("truncate");
        var checkpoint = await app.Service<AuditCheckpoints>().CreateAsync(tenant, default);
        Assert.Equal(20, checkpoint!.Seq);
        Assert.Equal(20, (await VerifyAsync(tenant)).Checkpoint?.Seq);

        await TamperAsync(app, $"""
            DELETE FROM audit_events WHERE tenant_id = '{tenant}' AND seq > 15;
            UPDATE audit_heads h SET seq = 15, hash = e.hash FROM audit_events e WHERE e.tenant_id = h.tenant_id AND e.seq = 15 AND h.tenant_id = '{tenant}';
            """);

        var verification = await VerifyAsync(tenant);
        Assert.False(verification.Valid);
        Assert.Equal(16, verification.FirstInvalidSeq);
        Assert.Contains("checkpoint", verification.Reason);
    }

    [Fact]
    public async Task A_tail_removed_without_a_checkpoint_is_reported_by_the_head()
    {
        var tenant = await ChainOf20Async("truncate-head");

        await TamperAsync(app, $"DELETE FROM audit_events WHERE tenant_id = '{tenant}' AND seq > 18");

        Assert.Equal(19, (await VerifyAsync(tenant)).FirstInvalidSeq);
    }

    [Fact]
    public async Task A_rewritten_chain_is_caught_where_it_diverges_from_a_checkpoint()
    {
        var tenant = await ChainOf20Async("rewrite");
        await app.Service<AuditCheckpoints>().CreateAsync(tenant, default);

        // The attacker rewrites seq 20 with a self-consistent hash and moves the head: only the checkpoint disagrees.
        await TamperAsync(app, $"""
            UPDATE audit_events SET hash = repeat('d', 64) WHERE tenant_id = '{tenant}' AND seq = 20;
            UPDATE audit_heads SET hash = repeat('d', 64) WHERE tenant_id = '{tenant}';
            """);

        Assert.Equal(20, (await VerifyAsync(tenant)).FirstInvalidSeq);
    }

    [Fact]
    public async Task A_checkpoint_with_a_forged_signature_is_reported()
    {
        var tenant = await ChainOf20Async("forged-checkpoint");
        await app.Service<AuditCheckpoints>().CreateAsync(tenant, default);

        await TamperAsync(app, $"UPDATE audit_checkpoints SET at = at - interval '1 day' WHERE tenant_id = '{tenant}'");

        var verification = await VerifyAsync(tenant);
        Assert.Equal(20, verification.FirstInvalidSeq);
        Assert.Contains("not signed", verification.Reason);
    }
}
