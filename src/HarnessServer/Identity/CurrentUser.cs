using System.Security.Claims;
using Microsoft.Extensions.Options;

namespace HarnessServer.Identity;

/// <summary>Who is calling: read once from the validated token's claims, named by configuration.</summary>
internal sealed record CurrentUser(string TenantId, string UserId, string DisplayName, IReadOnlyList<string> Teams, IReadOnlyList<string> Roles)
{
    public bool IsAdmin => Roles.Contains(HarnessRoles.Admin);
    public bool IsApprover => Roles.Contains(HarnessRoles.Approver);
    public bool IsAuditor => Roles.Contains(HarnessRoles.Auditor);

    /// <summary>Lets minimal API handlers take the caller as a parameter.</summary>
    public static ValueTask<CurrentUser?> BindAsync(HttpContext context) => ValueTask.FromResult(context.Features.Get<CurrentUser>());

    public static CurrentUser? FromPrincipal(ClaimsPrincipal principal, ClaimNames names)
    {
        var tenant = principal.FindFirstValue(names.Tenant);
        var user = principal.FindFirstValue(names.User);
        if (string.IsNullOrWhiteSpace(tenant) || string.IsNullOrWhiteSpace(user))
        {
            return null;
        }

        return new CurrentUser(
            tenant,
            user,
            principal.FindFirstValue(names.Name) ?? user,
            Values(principal, names.Teams),
            Values(principal, names.Roles));
    }

    /// <summary>
    /// Why the identity cannot be stored (a claim longer than its column, or holding what a text column cannot: a
    /// NUL or an unpaired surrogate), or null. The just-in-time provisioning and every audit event of this user would
    /// otherwise fail with a misleading 503.
    /// </summary>
    public string? Unstorable(ClaimNames names)
    {
        if (TenantId.Length > Data.ColumnLimits.Identifier)
        {
            return $"The token's '{names.Tenant}' (tenant) claim is longer than {Data.ColumnLimits.Identifier} characters.";
        }

        if (UserId.Length > Data.ColumnLimits.Identifier)
        {
            return $"The token's '{names.User}' (user) claim is longer than {Data.ColumnLimits.Identifier} characters.";
        }

        if (DisplayName.Length > Data.ColumnLimits.DisplayName)
        {
            return $"The token's '{names.Name}' (name) claim is longer than {Data.ColumnLimits.DisplayName} characters.";
        }

        if (Teams.Any(t => t.Length > Data.ColumnLimits.Identifier))
        {
            return $"A '{names.Teams}' (team) claim of the token is longer than {Data.ColumnLimits.Identifier} characters.";
        }

        (string Claim, string? Problem)[] texts =
        [
            ($"'{names.Tenant}' (tenant)", Http.StorableText.Problem(TenantId)),
            ($"'{names.User}' (user)", Http.StorableText.Problem(UserId)),
            ($"'{names.Name}' (name)", Http.StorableText.Problem(DisplayName)),
            ($"'{names.Teams}' (team)", Teams.Select(Http.StorableText.Problem).FirstOrDefault(p => p is not null)),
            ($"'{names.Roles}' (role)", Roles.Select(Http.StorableText.Problem).FirstOrDefault(p => p is not null)),
        ];
        return texts.FirstOrDefault(t => t.Problem is not null) is { Problem: { } problem } found
            ? $"The token's {found.Claim} claim cannot be recorded: {problem}."
            : null;
    }

    private static string[] Values(ClaimsPrincipal principal, string type) =>
        principal.FindAll(type).Select(c => c.Value).Where(v => v.Length > 0).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
}

internal static class CurrentUserExtensions
{
    /// <summary>The caller of an authenticated request; endpoints behind the user policy always have one.</summary>
    public static CurrentUser GetCurrentUser(this HttpContext context) =>
        context.Features.Get<CurrentUser>() ?? throw new InvalidOperationException("The request has no authenticated user.");

    public static ClaimNames ClaimNames(this HttpContext context) =>
        context.RequestServices.GetRequiredService<IOptions<HarnessAuthenticationOptions>>().Value.Claims;
}
