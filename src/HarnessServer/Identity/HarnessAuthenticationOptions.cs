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

    /// <summary>The signature algorithms accepted (<c>Authentication:ValidAlgorithms</c>); asymmetric ones only.</summary>
    public string[]? ValidAlgorithms { get; set; }

    /// <summary>The <c>typ</c> header values accepted when a token has one (<c>Authentication:ValidTypes</c>), case-insensitively.</summary>
    public string[]? ValidTypes { get; set; }

    // Arrays bound from configuration are appended to defaults held in the property, so defaults live here.
    public static readonly string[] DefaultAlgorithms = ["RS256", "ES256", "PS256"];
    public static readonly string[] DefaultTypes = ["at+jwt", "application/at+jwt", "JWT"];

    // What a JWKS can verify: a shared-secret (HS*) algorithm would let anyone holding the key mint tokens.
    private static readonly HashSet<string> Asymmetric = new(StringComparer.Ordinal)
    {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
    };

    public string[] Algorithms => ValidAlgorithms is { Length: > 0 } configured ? configured : DefaultAlgorithms;

    public string[] Types => ValidTypes is { Length: > 0 } configured ? configured : DefaultTypes;

    /// <summary>Refuses at start what would weaken token checks.</summary>
    public void Check()
    {
        if (Algorithms.FirstOrDefault(a => !Asymmetric.Contains(a)) is { } unsafeAlgorithm)
        {
            throw new InvalidOperationException(
                $"Authentication:ValidAlgorithms has '{unsafeAlgorithm}'; only asymmetric algorithms ({string.Join(", ", Asymmetric)}) can be accepted.");
        }

        if (Types.Any(string.IsNullOrWhiteSpace))
        {
            throw new InvalidOperationException("Authentication:ValidTypes must not have an empty entry.");
        }
    }
}

internal sealed class ClaimNames
{
    public string User { get; set; } = "sub";
    public string Tenant { get; set; } = "tid";
    public string Teams { get; set; } = "groups";
    public string Roles { get; set; } = "roles";
    public string Name { get; set; } = "name";
}
