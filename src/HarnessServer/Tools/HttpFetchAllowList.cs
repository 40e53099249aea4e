using System.Globalization;
using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace HarnessServer.Tools;

/// <summary>The domains a tenant's admins allow <c>http.fetch</c> to reach, as stored; one row per tenant.</summary>
internal sealed class HttpFetchDomains : ITenantOwned
{
    public required string TenantId { get; set; }
    public required string[] Domains { get; set; }
    public required string UpdatedBy { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>The answer of <c>/v1/admin/http-fetch/domains</c>: what admins set, what the operator configured, and both.</summary>
internal sealed record HttpFetchDomainsView(
    IReadOnlyList<string> Domains, IReadOnlyList<string> Configured, IReadOnlyList<string> Effective, string? UpdatedBy, DateTimeOffset? UpdatedAt);

internal sealed record HttpFetchDomainsBody(string?[]? Domains);

/// <summary>
/// A tenant's <c>http.fetch</c> allow-list: the operator's <c>Harness:HttpFetch:AllowedDomains:&lt;tenant&gt;</c> plus
/// what the tenant's admins set through the API (validated, audited with the list before and after). Cached per tenant
/// and dropped when <see cref="ChangeFeed"/> reports a change from any server process, so a removed domain stops being
/// reachable everywhere at once.
/// </summary>
internal sealed class HttpFetchAllowList
{
    public const string ChangeKind = "http_fetch";
    public const int MaxDomains = 200;

    private static readonly IdnMapping Idn = new() { UseStd3AsciiRules = true };

    private readonly TenantDbContextFactory _contexts;
    private readonly ChangeFeed _feed;
    private readonly HttpFetchOptions _options;
    private readonly TimeProvider _time;
    private readonly TenantCache<HttpFetchDomainsView> _tenants;

    public HttpFetchAllowList(TenantDbContextFactory contexts, ChangeFeed feed, IOptions<HttpFetchOptions> options, TimeProvider time)
    {
        _contexts = contexts;
        _feed = feed;
        _options = options.Value;
        _time = time;
        _tenants = new TenantCache<HttpFetchDomainsView>(feed, ChangeKind, LoadAsync);
    }

    public Task<HttpFetchDomainsView> GetAsync(string tenantId, CancellationToken cancellationToken) => _tenants.GetAsync(tenantId, cancellationToken);

    /// <summary>Replaces the admins' list; every entry is checked first and nothing is stored when one is wrong.</summary>
    public async Task<HttpFetchDomainsView> ReplaceAsync(CurrentUser admin, HttpFetchDomainsBody body, AuditChain audit, CancellationToken cancellationToken)
    {
        var requested = body.Domains ?? throw Invalid("The body must carry the allow-list as 'domains' (an array, empty to clear it).");
        if (requested.Length > MaxDomains)
        {
            throw Invalid($"The allow-list has {requested.Length} entries; at most {MaxDomains} are allowed.");
        }

        var domains = requested.Select((d, i) => Normalize(d, i)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        var now = _time.GetUtcNow();
        await audit.AppendAsync(admin.TenantId, async (unit, ct) =>
        {
            // The row exists (empty, on the tenant's first change) and is locked before it is read, so the audited
            // "before" is exactly what this change replaced, even when admins save at once.
            await unit.Db.Database.ExecuteSqlInterpolatedAsync($"""
                INSERT INTO http_fetch_domains (tenant_id, domains, updated_by, updated_at)
                VALUES ({admin.TenantId}, {Array.Empty<string>()}, {admin.UserId}, {now})
                ON CONFLICT (tenant_id) DO NOTHING
                """, ct);
            var before = (await unit.Db.HttpFetchDomains.FromSqlInterpolated($"SELECT * FROM http_fetch_domains WHERE tenant_id = {admin.TenantId} FOR UPDATE")
                .IgnoreQueryFilters().AsNoTracking().ToListAsync(ct)).Single().Domains;
            await unit.Db.Database.ExecuteSqlInterpolatedAsync($"""
                UPDATE http_fetch_domains SET domains = {domains}, updated_by = {admin.UserId}, updated_at = {now} WHERE tenant_id = {admin.TenantId}
                """, ct);
            unit.NotifyChange(ChangeKind, admin.TenantId);
            return (0, (IReadOnlyList<AuditEntry>)[new AuditEntry("http_fetch.domains_changed", new AuditActor(admin.UserId, admin.DisplayName),
                Tool: "http.fetch", Payload: new JsonObject
                {
                    ["before"] = new JsonArray([.. before.Select(d => JsonValue.Create(d))]),
                    ["after"] = new JsonArray([.. domains.Select(d => JsonValue.Create(d))]),
                })]);
        }, cancellationToken);
        _feed.Publish(ChangeKind, admin.TenantId);
        return View(domains, admin.TenantId, admin.UserId, now);
    }

    /// <summary>Whether <paramref name="host"/> (lower-case ASCII) is on the list: an exact name, or under a <c>*.</c> entry.</summary>
    public static bool Matches(string pattern, string host) =>
        pattern.StartsWith("*.", StringComparison.Ordinal)
            ? host.EndsWith(pattern[1..], StringComparison.Ordinal) && host.Length > pattern.Length - 1
            : host == pattern;

    // A host name in its ASCII (punycode) form, lower case, optionally behind "*." — never a URL, port, path or IP.
    internal static string Normalize(string? entry, int index)
    {
        var text = entry?.Trim().TrimEnd('.').ToLowerInvariant() ?? "";
        var wildcard = text.StartsWith("*.", StringComparison.Ordinal);
        var name = wildcard ? text[2..] : text;
        string ascii;
        try
        {
            ascii = name.Length == 0 ? "" : Idn.GetAscii(name);
        }
        catch (ArgumentException)
        {
            ascii = "";
        }

        var labels = ascii.Split('.');
        var valid = ascii.Length is > 0 and <= 253
            && labels.All(l => l.Length is > 0 and <= 63 && l.All(c => char.IsAsciiLetterOrDigit(c) || c == '-') && l[0] != '-' && l[^1] != '-')
            && !labels[^1].All(char.IsAsciiDigit)
            && (!wildcard || labels.Length >= 2);
        return valid
            ? (wildcard ? "*." : "") + ascii
            : throw Invalid($"domains[{index}] '{entry}' is not a host name: give 'example.com' or '*.example.com' (subdomains, at least two labels), without scheme, port or path.");
    }

    private static HarnessError Invalid(string detail) => new(ErrorKind.Invalid, "invalid_domain", detail);

    private async Task<HttpFetchDomainsView> LoadAsync(string tenantId)
    {
        await using var db = _contexts.Create(tenantId);
        var stored = await db.HttpFetchDomains.AsNoTracking().FirstOrDefaultAsync();
        return View(stored?.Domains ?? [], tenantId, stored?.UpdatedBy, stored?.UpdatedAt);
    }

    private HttpFetchDomainsView View(string[] domains, string tenantId, string? updatedBy, DateTimeOffset? updatedAt)
    {
        var configured = (_options.AllowedDomains.GetValueOrDefault(tenantId) ?? []).Select(d => d.Trim().TrimEnd('.').ToLowerInvariant()).ToArray();
        return new HttpFetchDomainsView(domains, configured, [.. configured.Union(domains, StringComparer.Ordinal).Order(StringComparer.Ordinal)], updatedBy, updatedAt);
    }
}
