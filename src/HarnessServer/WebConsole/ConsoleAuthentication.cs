namespace HarnessServer.WebConsole;

/// <summary>
/// The console's own authentication schemes and policies. The cookie scheme is never the default: the API's routes
/// authenticate with bearer tokens only, so a console cookie cannot authorize <c>/v1/*</c> (and the API needs no
/// CSRF defence). Every console policy names the cookie scheme itself.
/// </summary>
internal static class ConsoleAuthentication
{
    public const string CookieScheme = "Console";
    public const string OidcScheme = "ConsoleOidc";
    public const string DevelopmentAuthenticationType = "harness-development-console";

    public const string PathBase = "/console";
    public const string SignInPath = "/console/sign-in";
    public const string CallbackPath = "/console/signin-oidc";

    /// <summary>Any signed-in console user.</summary>
    public const string Member = "console.member";

    /// <summary>Approvers and admins: the approval queue.</summary>
    public const string Approver = "console.approver";

    /// <summary>Auditors and admins: the audit trail and its verification.</summary>
    public const string Auditor = "console.auditor";

    /// <summary>
    /// A return address the console may redirect to after sign-in: a path under <c>/console</c> on this server,
    /// never another host (<c>//evil</c>, <c>/\evil</c>) or a path outside the console.
    /// </summary>
    public static string SafeReturnUrl(string? returnUrl) =>
        returnUrl is { Length: > 0 and < 2048 }
        && (returnUrl == PathBase || returnUrl.StartsWith(PathBase + "/", StringComparison.Ordinal)
            || returnUrl.StartsWith(PathBase + "?", StringComparison.Ordinal))
        && !returnUrl.Contains('\\') && !returnUrl.Contains("//", StringComparison.Ordinal) && !returnUrl.Contains("..", StringComparison.Ordinal)
        && returnUrl.All(c => c > ' ' && c < 0x7f)
            ? returnUrl
            : PathBase;
}
