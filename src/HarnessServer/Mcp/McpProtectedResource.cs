using HarnessServer.Identity;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;

namespace HarnessServer.Mcp;

/// <summary>
/// <c>/mcp</c> as an OAuth 2.1 protected resource: the RFC 9728 metadata document naming the OIDC authority whose
/// tokens are accepted, and the <c>resource_metadata</c> parameter on every 401 of <c>/mcp</c> so a client can find it.
/// Tokens are checked by the server's one JWT bearer setup (issuer, signature, this server's audience); nothing here
/// accepts a token that the HTTP API would refuse, and no token is ever sent on to anyone.
/// </summary>
internal static class McpProtectedResource
{
    public const string Path = "/mcp";
    public const string MetadataPath = "/.well-known/oauth-protected-resource" + Path;

    /// <summary>The RFC 9728 document for <c>/mcp</c>.</summary>
    public static ProtectedResourceMetadata Metadata(HttpContext http, McpOptions options, IConfiguration configuration) =>
        new(ResourceOf(http, options).ToString(), options.AuthorizationServers ?? AuthoritiesOf(configuration), ["header"], "HarnessServer");

    public static Uri ResourceOf(HttpContext http, McpOptions options) =>
        options.Resource ?? new Uri($"{http.Request.Scheme}://{http.Request.Host}{http.Request.PathBase}{Path}");

    private static Uri MetadataOf(HttpContext http, McpOptions options)
    {
        var resource = ResourceOf(http, options);
        // RFC 9728 section 3.1: the well-known segment goes between the host and the resource's path.
        return new Uri(resource.GetLeftPart(UriPartial.Authority) + "/.well-known/oauth-protected-resource" + resource.AbsolutePath.TrimEnd('/'));
    }

    private static string[] AuthoritiesOf(IConfiguration configuration)
    {
        if (configuration["Authentication:Authority"] is { Length: > 0 } authority)
        {
            return [authority.TrimEnd('/')];
        }

        // Entra ID: the v2.0 issuer of the configured tenant.
        var azureAd = configuration.GetSection("AzureAd");
        return azureAd["ClientId"] is { Length: > 0 } && azureAd["TenantId"] is { Length: > 0 } tenant
            ? [$"{(azureAd["Instance"] ?? "https://login.microsoftonline.com/").TrimEnd('/')}/{tenant}/v2.0"]
            : [];
    }

    /// <summary>
    /// Wraps the bearer challenge (registered after <see cref="IdentityExtensions.AddHarnessIdentity"/>'s): a 401 of
    /// <c>/mcp</c> keeps its problem body and its <c>error</c> parameter and gains <c>resource_metadata</c>.
    /// </summary>
    internal sealed class Challenge(IOptions<McpOptions> options) : IPostConfigureOptions<JwtBearerOptions>
    {
        public void PostConfigure(string? name, JwtBearerOptions bearer)
        {
            if (name != JwtBearerDefaults.AuthenticationScheme)
            {
                return;
            }

            bearer.Events ??= new JwtBearerEvents();
            var inner = bearer.Events.OnChallenge;
            bearer.Events.OnChallenge = async context =>
            {
                var http = context.HttpContext;
                if (http.Request.Path.StartsWithSegments(Path))
                {
                    var metadata = MetadataOf(http, options.Value);
                    http.Response.OnStarting(() =>
                    {
                        var scheme = http.Response.Headers.WWWAuthenticate.ToString();
                        var parameters = scheme.Length > "Bearer".Length ? scheme["Bearer ".Length..] + ", " : "";
                        http.Response.Headers.WWWAuthenticate = $"Bearer {parameters}resource_metadata=\"{metadata}\"";
                        return Task.CompletedTask;
                    });
                }

                await inner(context);
            };
        }
    }
}

/// <summary>OAuth 2.0 Protected Resource Metadata (RFC 9728), the members this server sets.</summary>
internal sealed record ProtectedResourceMetadata(
    [property: System.Text.Json.Serialization.JsonPropertyName("resource")] string Resource,
    [property: System.Text.Json.Serialization.JsonPropertyName("authorization_servers")] IReadOnlyList<string> AuthorizationServers,
    [property: System.Text.Json.Serialization.JsonPropertyName("bearer_methods_supported")] IReadOnlyList<string> BearerMethodsSupported,
    [property: System.Text.Json.Serialization.JsonPropertyName("resource_name")] string ResourceName);
