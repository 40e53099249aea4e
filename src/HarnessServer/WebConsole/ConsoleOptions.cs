namespace HarnessServer.WebConsole;

/// <summary>
/// The <c>Harness:Console</c> section: the OpenID Connect client the console signs people in with. The authority
/// defaults to the API's (<c>Authentication:Authority</c>), so the same issuer's claims name tenant, teams and roles.
/// </summary>
internal sealed class ConsoleOptions
{
    /// <summary>The issuer the console signs in against; <c>Authentication:Authority</c> when unset.</summary>
    public string? Authority { get; set; }

    /// <summary>The console's client at the issuer; without one (and outside Development) there is no console.</summary>
    public string? ClientId { get; set; }

    /// <summary>The client's secret for the token request; none for a public client (PKCE is used either way).</summary>
    public string? ClientSecret { get; set; }

    /// <summary>Scopes asked for besides <c>openid</c>; the id token must carry the tenant, team and role claims.</summary>
    public string[]? Scopes { get; set; }

    /// <summary>Whether the issuer's metadata must come over HTTPS; <c>Authentication:RequireHttpsMetadata</c> when unset.</summary>
    public bool? RequireHttpsMetadata { get; set; }

    /// <summary>How long a console sign-in lasts without use.</summary>
    public TimeSpan SessionLifetime { get; set; } = TimeSpan.FromHours(8);

    public static readonly string[] DefaultScopes = ["openid", "profile"];
}
