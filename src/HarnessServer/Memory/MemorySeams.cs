using HarnessServer.Identity;
using Npgsql;

namespace HarnessServer.Memory;

/// <summary>What the policy says about one memory tool call on one namespace.</summary>
public sealed record MemoryPolicyOutcome(MemoryPolicyEffect Effect, string? Reason)
{
    public static MemoryPolicyOutcome Allow { get; } = new(MemoryPolicyEffect.Allow, null);
    public static MemoryPolicyOutcome Deny(string reason) => new(MemoryPolicyEffect.Deny, reason);
    public static MemoryPolicyOutcome Ask(string reason) => new(MemoryPolicyEffect.Ask, reason);
}

public enum MemoryPolicyEffect
{
    Allow,
    Deny,
    Ask,
}

/// <summary>
/// Decides the HTTP memory endpoints' calls as the tools <c>memory.save</c> and <c>memory.search</c> with the namespace as
/// their argument, after membership was checked. The policy engine replaces the default, which allows.
/// </summary>
public interface IMemoryPolicy
{
    Task<MemoryPolicyOutcome> DecideAsync(CurrentUser user, string tool, string @namespace, CancellationToken cancellationToken);
}

/// <summary>One memory write or delete, recorded in the transaction that makes it.</summary>
/// <param name="Type"><c>memory.saved</c> or <c>memory.deleted</c>.</param>
/// <param name="Namespace">The namespace as the caller wrote it (<c>user</c>, not the storage key).</param>
/// <param name="ContentSha256">Lower-case hex SHA-256 of the item's UTF-8 content, so the trail never holds the text.</param>
public sealed record MemoryAuditEvent(
    string Type,
    string TenantId,
    string ActorId,
    string ActorName,
    string Tool,
    string Namespace,
    Guid ItemId,
    string ContentSha256,
    DateTimeOffset At);

/// <summary>
/// Records memory writes and deletes in the audit trail. Called inside the write's own transaction (which runs as
/// <c>harness_app</c> with <c>harness.tenant_id</c> set): an exception rolls the write back, so nothing unaudited
/// commits. The audit chain replaces the default, which records nothing.
/// </summary>
public interface IMemoryAudit
{
    Task RecordAsync(MemoryAuditEvent auditEvent, NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken);
}

/// <summary>
/// Whether <paramref name="sessionId"/> is a session the user owns. Sessions replace the default, which accepts any
/// id that parses as a GUID; items are still only visible to the user who wrote them.
/// </summary>
public interface ISessionOwnership
{
    Task<bool> IsOwnerAsync(CurrentUser user, string sessionId, CancellationToken cancellationToken);
}

internal sealed class AllowingMemoryPolicy : IMemoryPolicy
{
    public Task<MemoryPolicyOutcome> DecideAsync(CurrentUser user, string tool, string @namespace, CancellationToken cancellationToken) =>
        Task.FromResult(MemoryPolicyOutcome.Allow);
}

internal sealed class UnrecordedMemoryAudit : IMemoryAudit
{
    public Task RecordAsync(MemoryAuditEvent auditEvent, NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken) =>
        Task.CompletedTask;
}

internal sealed class GuidSessionOwnership : ISessionOwnership
{
    public Task<bool> IsOwnerAsync(CurrentUser user, string sessionId, CancellationToken cancellationToken) =>
        Task.FromResult(Guid.TryParse(sessionId, out _));
}
