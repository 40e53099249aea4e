namespace HarnessServer.Mcp;

/// <summary>The <c>Harness:Mcp</c> section: how <c>/mcp</c> names itself as a protected resource and reports waits.</summary>
internal sealed class McpOptions
{
    /// <summary>
    /// The absolute URL clients reach <c>/mcp</c> at (the RFC 8707 resource their tokens are requested for). Unset, it
    /// is the request's own scheme, host and path base, which is right unless a proxy rewrites them.
    /// </summary>
    public Uri? Resource { get; set; }

    /// <summary>Authorization servers named in the metadata; unset, the configured OIDC authority (or Entra ID's).</summary>
    public string[]? AuthorizationServers { get; set; }

    /// <summary>How often a call held for approval reports that it is still waiting (<c>notifications/progress</c>).</summary>
    public TimeSpan ProgressInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Refuses at start what would make <c>/mcp</c> advertise itself wrongly or spin.</summary>
    public bool IsValid(out string error)
    {
        if (Resource is { } resource && (!resource.IsAbsoluteUri || resource.Scheme is not ("https" or "http") || !string.IsNullOrEmpty(resource.Fragment)))
        {
            error = "Harness:Mcp:Resource must be an absolute http(s) URL without a fragment.";
            return false;
        }

        if (ProgressInterval < TimeSpan.FromMilliseconds(50) || ProgressInterval > TimeSpan.FromMinutes(5))
        {
            error = "Harness:Mcp:ProgressInterval must be between 50 ms and 5 minutes.";
            return false;
        }

        error = "";
        return true;
    }
}
