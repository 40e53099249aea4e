namespace HarnessServer.Identity;

/// <summary>The <c>Authentication</c> section: the OIDC issuer, the accepted audience and the claim names.</summary>
internal sealed class HarnessAuthenticationOptions
{
    public string? Authority { get; set; }
    public string Audience { get; set; } = "harness";
    public bool RequireHttpsMetadata { get; set; } = true;

    /// <summary>Least time between two JWKS refreshes forced by an unknown signing key (key rotation).</summary>
    public TimeSpan KeyRefreshInterval { get; set; } = TimeSpan.FromMinutes(5);

    public ClaimNames Claims { get; set; } = new();
}

internal sealed class ClaimNames
{
    public string User { get; set; } = "sub";
    public string Tenant { get; set; } = "tid";
    public string Teams { get; set; } = "groups";
    public string Roles { get; set; } = "roles";
    public string Name { get; set; } = "name";
}
