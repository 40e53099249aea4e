using HarnessServer.Identity;

namespace HarnessServer.WebConsole.Admin;

/// <summary>What the console's admin pages share: who may open them and how a level is named in their addresses.</summary>
internal static class AdminPages
{
    /// <summary>The role every admin page requires (with a console sign-in): tenant administrators only.</summary>
    public const string Role = HarnessRoles.Admin;

    /// <summary>The address of the policy editor at one level (<c>org</c>, <c>team</c> or <c>user</c> with its name).</summary>
    public static string PolicyEditor(string level, string? name, string? extra = null)
    {
        var query = $"?level={Uri.EscapeDataString(level)}";
        if (!string.IsNullOrEmpty(name))
        {
            query += $"&name={Uri.EscapeDataString(name)}";
        }

        return "/console/admin/policies" + query + (extra is null ? "" : "&" + extra);
    }

    /// <summary>
    /// A configured endpoint as it may be shown: scheme, host, port and path, never a user name, password or query
    /// (where some providers carry a key).
    /// </summary>
    public static string ShownEndpoint(string endpoint) =>
        Uri.TryCreate(endpoint, UriKind.Absolute, out var uri)
            ? new UriBuilder(uri) { UserName = "", Password = "", Query = "", Fragment = "" }.Uri.ToString()
            : "(not an absolute URL)";
}
