using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace HarnessServer.Policies;

/// <summary>
/// A tenant's policies: the newest stored version of every level, compiled once and cached until
/// <see cref="ChangeFeed"/> reports a change from any server process. Stores new versions (admin edits and file
/// imports) with their audit events, in one transaction.
/// </summary>
internal sealed class PolicyService
{
    public const string ChangeKind = "policies";

    private readonly TenantDbContextFactory _contexts;
    private readonly ChangeFeed _feed;
    private readonly TenantCache<CompiledPolicy> _compiled;

    public PolicyService(TenantDbContextFactory contexts, ChangeFeed feed)
    {
        _contexts = contexts;
        _feed = feed;
        _compiled = new TenantCache<CompiledPolicy>(feed, ChangeKind, CompileAsync);
    }

    public async Task<PolicyResolver> ResolverForAsync(CurrentUser user, CancellationToken cancellationToken) =>
        (await CompiledAsync(user.TenantId, cancellationToken)).For(user.UserId, user.Teams);

    public async Task<PolicyResolver> ResolverForAsync(string tenant, string userId, IReadOnlyList<string> teams, CancellationToken cancellationToken) =>
        (await CompiledAsync(tenant, cancellationToken)).For(userId, teams);

    public Task<CompiledPolicy> CompiledAsync(string tenant, CancellationToken cancellationToken) =>
        _compiled.GetAsync(tenant, cancellationToken);

    /// <summary>The newest version of one level, or null when the level was never stored.</summary>
    public static Task<PolicyVersion?> CurrentAsync(HarnessDbContext db, PolicyLevelKey level, CancellationToken cancellationToken)
    {
        var key = level.ToString();
        return db.PolicyVersions.AsNoTracking()
            .Where(p => p.LevelKey == key)
            .OrderByDescending(p => p.Version)
            .FirstOrDefaultAsync(cancellationToken);
    }

    /// <summary>
    /// Validates <paramref name="content"/> and stores it as the level's next version with its audit event.
    /// <paramref name="expectedVersion"/> (from If-Match) must be the current version, or the store answers 412.
    /// </summary>
    public async Task<PolicyVersion> StoreAsync(
        AuditChain audit, string tenant, PolicyLevelKey level, string content, string origin, AuditActor actor,
        int? expectedVersion, TimeProvider time, CancellationToken cancellationToken, int? restoresVersion = null)
    {
        var parsed = PolicyParser.Parse(content, level.Level, level.SourceName(tenant));
        if (!parsed.IsValid)
        {
            throw new PolicyValidationException(parsed.Errors);
        }

        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(content)));
        var receipt = await audit.AppendAsync(tenant, async (unit, ct) =>
        {
            var current = await CurrentAsync(unit.Db, level, ct);
            var currentVersion = current?.Version ?? 0;
            if (expectedVersion is { } expected && expected != currentVersion)
            {
                throw new HarnessError(ErrorKind.PreconditionFailed, "version_mismatch",
                    $"The {level} policy is at version {currentVersion}, not {expected}; reload it and apply your change again.");
            }

            var stored = new PolicyVersion
            {
                TenantId = tenant,
                LevelKey = level.ToString(),
                Version = currentVersion + 1,
                Content = content,
                ContentHash = hash,
                Origin = origin,
                ChangedBy = actor.Id,
                ChangedByName = actor.Name,
                ChangedAt = time.GetUtcNow(),
            };
            unit.Db.PolicyVersions.Add(stored);
            try
            {
                await unit.Db.SaveChangesAsync(ct);
            }
            catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
            {
                throw new HarnessError(ErrorKind.PreconditionFailed, "version_mismatch",
                    $"The {level} policy changed while this edit was stored; reload it and apply your change again.");
            }

            unit.NotifyChange(ChangeKind, tenant);
            var payload = new JsonObject
            {
                ["level"] = level.ToString(),
                ["origin"] = origin,
                ["beforeVersion"] = current?.Version,
                ["afterVersion"] = stored.Version,
                ["beforeHash"] = current?.ContentHash,
                ["afterHash"] = hash,
            };
            if (restoresVersion is { } restores)
            {
                payload["restoresVersion"] = restores;
            }

            return (stored, (IReadOnlyList<AuditEntry>)[new AuditEntry("policy.changed", actor, Payload: payload)]);
        }, cancellationToken);
        // This process forgets at once; the others hear the notification committed with the version.
        _feed.Publish(ChangeKind, tenant);
        return receipt.Result;
    }

    /// <summary>
    /// Stores the content of an older version of <paramref name="level"/> as its next version (origin <c>revert</c>),
    /// audited as any admin change with the version it restores; the same If-Match guard as an edit.
    /// </summary>
    public async Task<PolicyVersion> RevertAsync(
        AuditChain audit, string tenant, PolicyLevelKey level, int version, AuditActor actor,
        int? expectedVersion, TimeProvider time, CancellationToken cancellationToken)
    {
        var key = level.ToString();
        await using var db = _contexts.Create(tenant);
        var old = await db.PolicyVersions.AsNoTracking().Where(p => p.LevelKey == key && p.Version == version)
            .Select(p => p.Content).FirstOrDefaultAsync(cancellationToken)
            ?? throw new HarnessError(ErrorKind.NotFound, "policy_version_not_found", $"The {level} policy has no version {version}.");
        return await StoreAsync(audit, tenant, level, old, "revert", actor, expectedVersion, time, cancellationToken, version);
    }

    private async Task<CompiledPolicy> CompileAsync(string tenant) => PolicyCompiler.Compile(await StoredSetAsync(tenant, CancellationToken.None));

    /// <summary>The newest stored version of every level of <paramref name="tenant"/>, parsed (what is in force).</summary>
    public async Task<PolicySet> StoredSetAsync(string tenant, CancellationToken cancellationToken)
    {
        await using var db = _contexts.Create(tenant);
        var newest = await db.PolicyVersions.AsNoTracking()
            .GroupBy(p => p.LevelKey)
            .Select(g => g.OrderByDescending(p => p.Version).First())
            .ToListAsync(cancellationToken);

        var set = PolicySet.Empty(tenant);
        var teams = new Dictionary<string, PolicyDocument>(StringComparer.Ordinal);
        var users = new Dictionary<string, PolicyDocument>(StringComparer.Ordinal);
        var org = set.Org;
        foreach (var version in newest)
        {
            var level = PolicyLevelKey.Parse(version.LevelKey);
            // Stored versions were validated when stored; a document that no longer parses must not be skipped
            // silently (its denies would vanish), so the tenant fails closed instead.
            var document = PolicyParser.Parse(version.Content, level.Level, level.SourceName(tenant)).Document
                ?? throw new InvalidOperationException($"Stored policy {version.LevelKey} v{version.Version} of {tenant} no longer parses.");
            switch (level.Level)
            {
                case PolicyLevel.Org: org = document; break;
                case PolicyLevel.Team: teams[level.Name!] = document; break;
                default: users[level.Name!] = document; break;
            }
        }

        return set with { Org = org, Teams = teams, Users = users };
    }
}

/// <summary>A policy body that does not parse: 400 with every error's line and column; nothing is stored.</summary>
internal sealed class PolicyValidationException(IReadOnlyList<PolicyError> errors)
    : HarnessError(ErrorKind.Invalid, "invalid_policy",
        errors.Count == 0 ? "The policy is invalid." : $"line {errors[0].Line}, column {errors[0].Column}: {errors[0].Message}")
{
    public IReadOnlyList<PolicyError> Errors { get; } = errors;

    public override IReadOnlyDictionary<string, object?> Extensions => new Dictionary<string, object?>
    {
        ["errors"] = Errors.Select(e => new { e.Line, e.Column, e.Message }).ToArray(),
    };
}
