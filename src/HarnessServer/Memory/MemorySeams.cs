using HarnessServer.Identity;
using Npgsql;

namespace HarnessServer.Memory;

/// <summary>What the policy says about one memory tool call on one namespace.</summary>
internal sealed record MemoryPolicyOutcome(MemoryPolicyEffect Effect, string? Reason)
{
    public static MemoryPolicyOutcome Allow { get; } = new(MemoryPolicyEffect.Allow, null);
    public static MemoryPolicyOutcome Deny(string reason) => new(MemoryPolicyEffect.Deny, reason);
    public static MemoryPolicyOutcome Ask(string reason) => new(MemoryPolicyEffect.Ask, reason);
}

internal enum MemoryPolicyEffect
{
    Allow,
    Deny,
    Ask,
}

/// <summary>
/// Decides the HTTP memory endpoints' calls as the tools <c>memory.save</c> and <c>memory.search</c> with the namespace as
/// their argument, after membership was checked. The policy engine replaces the default, which allows.
/// </summary>
internal interface IMemoryPolicy
{
    Task<MemoryPolicyOutcome> DecideAsync(CurrentUser user, string tool, string @namespace, CancellationToken cancellationToken);
}

/// <summary>
/// Whether <paramref name="sessionId"/> is a session the user owns. Sessions replace the default, which accepts any
/// id that parses as a GUID; items are still only visible to the user who wrote them.
/// </summary>
internal interface ISessionOwnership
{
    Task<bool> IsOwnerAsync(CurrentUser user, string sessionId, CancellationToken cancellationToken);
}

/// <summary>
/// The tenant's compiled policy decides a memory call as the tool <c>memory.save</c> or <c>memory.search</c> with the
/// namespace as its <c>namespace</c> argument, exactly as the pipeline decides the built-in tools.
/// </summary>
internal sealed class PolicyMemoryPolicy(Policies.PolicyService policies) : IMemoryPolicy
{
    public async Task<MemoryPolicyOutcome> DecideAsync(CurrentUser user, string tool, string @namespace, CancellationToken cancellationToken)
    {
        var resolver = await policies.ResolverForAsync(user, cancellationToken);
        var decision = resolver.Decide(tool, new Dictionary<string, string?>(StringComparer.Ordinal) { ["namespace"] = @namespace });
        return decision.Effect switch
        {
            Policies.PolicyEffect.Allow => MemoryPolicyOutcome.Allow,
            Policies.PolicyEffect.Ask => MemoryPolicyOutcome.Ask(decision.Reason),
            _ => MemoryPolicyOutcome.Deny(decision.Reason),
        };
    }
}

/// <summary>A <c>session:&lt;id&gt;</c> namespace belongs to the owner of that session of the caller's tenant.</summary>
internal sealed class StoredSessionOwnership(Data.DatabaseSources sources) : ISessionOwnership
{
    public async Task<bool> IsOwnerAsync(CurrentUser user, string sessionId, CancellationToken cancellationToken)
    {
        if (!Guid.TryParse(sessionId, out var id))
        {
            return false;
        }

        await using var command = sources.Application.CreateCommand(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND tenant_id = $2 AND owner_user_id = $3)");
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        command.Parameters.Add(new NpgsqlParameter { Value = user.TenantId });
        command.Parameters.Add(new NpgsqlParameter { Value = user.UserId });
        return await command.ExecuteScalarAsync(cancellationToken) is true;
    }
}
