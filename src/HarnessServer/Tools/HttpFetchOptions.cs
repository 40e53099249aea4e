namespace HarnessServer.Tools;

/// <summary>The <c>Harness:HttpFetch</c> section.</summary>
internal sealed class HttpFetchOptions
{
    /// <summary>Per tenant, the domains <c>http.fetch</c> may reach: exact names or <c>*.example.com</c> for subdomains.</summary>
    public Dictionary<string, string[]> AllowedDomains { get; set; } = new(StringComparer.Ordinal);

    public int MaxResponseBytes { get; set; } = 1024 * 1024;
    public int TimeoutSeconds { get; set; } = 15;
    public int MaxRedirects { get; set; } = 5;

    /// <summary>
    /// Lets fetches reach private, loopback and link-local addresses. Off by default and never wise on a host with
    /// internal services; it exists for intranet deployments and tests.
    /// </summary>
    public bool AllowPrivateAddresses { get; set; }
}
