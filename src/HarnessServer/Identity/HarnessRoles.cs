using Microsoft.AspNetCore.Authorization;

namespace HarnessServer.Identity;

/// <summary>The roles a token can carry, per the contract.</summary>
internal static class HarnessRoles
{
    public const string Admin = "harness.admin";
    public const string Auditor = "harness.auditor";
    public const string Approver = "harness.approver";
}

/// <summary>Authorization policies; handlers never check role strings themselves.</summary>
internal static class HarnessPolicies
{
    /// <summary>Any authenticated user of a tenant.</summary>
    public const string User = "harness.user";
    public const string Admin = "harness.admin";
    /// <summary>Reads and verifies the audit trail: auditors and admins.</summary>
    public const string Auditor = "harness.auditor";
    /// <summary>Decides approvals: approvers and admins.</summary>
    public const string Approver = "harness.approver";
    /// <summary>Reads effective permissions of others: admins and auditors.</summary>
    public const string PermissionReader = "harness.permission-reader";

    public static void Add(AuthorizationOptions options)
    {
        options.AddPolicy(User, p => p.RequireAuthenticatedUser());
        options.AddPolicy(Admin, p => p.RequireAuthenticatedUser().RequireRole(HarnessRoles.Admin));
        options.AddPolicy(Auditor, p => p.RequireAuthenticatedUser().RequireRole(HarnessRoles.Auditor, HarnessRoles.Admin));
        options.AddPolicy(Approver, p => p.RequireAuthenticatedUser().RequireRole(HarnessRoles.Approver, HarnessRoles.Admin));
        options.AddPolicy(PermissionReader, p => p.RequireAuthenticatedUser().RequireRole(HarnessRoles.Admin, HarnessRoles.Auditor));
        options.FallbackPolicy = options.GetPolicy(User);
    }
}
