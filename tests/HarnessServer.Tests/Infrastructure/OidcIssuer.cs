using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace HarnessServer.Tests.Infrastructure;

/// <summary>
/// A real OIDC issuer on a loopback port: it serves discovery and JWKS over HTTP the way Keycloak or Auth0 do, and
/// signs RS256 tokens with its current key. Keys can be rotated to test that the server follows the JWKS.
/// </summary>
public sealed class OidcIssuer : IAsyncDisposable
{
    public const string Audience = "harness";

    private readonly WebApplication _app;
    private readonly List<RsaSecurityKey> _published = [];
    private RsaSecurityKey _current;

    private OidcIssuer(WebApplication app, RsaSecurityKey key)
    {
        _app = app;
        _current = key;
        _published.Add(key);
    }

    public string Authority { get; private set; } = "";

    public static async Task<OidcIssuer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var issuer = new OidcIssuer(app, NewKey());

        app.MapGet("/.well-known/openid-configuration", () => Results.Json(new Dictionary<string, object>
        {
            ["issuer"] = issuer.Authority,
            ["jwks_uri"] = issuer.Authority + "/jwks",
            ["authorization_endpoint"] = issuer.Authority + "/authorize",
            ["token_endpoint"] = issuer.Authority + "/token",
            ["id_token_signing_alg_values_supported"] = new[] { "RS256" },
            ["response_types_supported"] = new[] { "code" },
            ["subject_types_supported"] = new[] { "public" },
        }));
        app.MapGet("/jwks", () =>
        {
            lock (issuer._published)
            {
                return Results.Json(new { keys = issuer._published.Select(Jwk).ToArray() });
            }
        });

        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        issuer.Authority = address.TrimEnd('/');
        return issuer;
    }

    /// <summary>Signs with a new key and publishes it; the old key stays published only if <paramref name="keepOld"/>.</summary>
    public void RotateKey(bool keepOld = false)
    {
        lock (_published)
        {
            _current = NewKey();
            if (!keepOld)
            {
                _published.Clear();
            }

            _published.Add(_current);
        }
    }

    public string CreateToken(
        string user, string? tenant, IEnumerable<string>? teams = null, IEnumerable<string>? roles = null,
        string? name = null, string? audience = Audience, string? issuer = null,
        DateTimeOffset? expires = null, SecurityKey? signingKey = null, string algorithm = SecurityAlgorithms.RsaSha256,
        string? tokenType = null)
    {
        var identity = new ClaimsIdentity([new Claim("sub", user), new Claim("name", name ?? user)]);
        if (tenant is not null)
        {
            identity.AddClaim(new Claim("tid", tenant));
        }

        foreach (var team in teams ?? [])
        {
            identity.AddClaim(new Claim("groups", team));
        }

        foreach (var role in roles ?? [])
        {
            identity.AddClaim(new Claim("roles", role));
        }

        var now = DateTime.UtcNow;
        var expiry = (expires ?? DateTimeOffset.UtcNow.AddHours(1)).UtcDateTime;
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer ?? Authority,
            Audience = audience,
            Subject = identity,
            IssuedAt = expiry < now ? expiry.AddMinutes(-10) : now,
            NotBefore = expiry < now ? expiry.AddMinutes(-10) : now,
            Expires = expiry,
            SigningCredentials = new SigningCredentials(signingKey ?? _current, algorithm),
            TokenType = tokenType,
        });
    }

    /// <summary>A token signed with the current key whose header has exactly <paramref name="header"/>'s members plus kid.</summary>
    public string CreateTokenWithHeader(string headerJson, string user, string tenant)
    {
        static string Encode(string json) => Base64UrlEncoder.Encode(Encoding.UTF8.GetBytes(json));
        var exp = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds();
        var header = Encode(headerJson.TrimEnd('}') + $",\"kid\":\"{_current.KeyId}\"}}");
        var payload = Encode($$"""{"sub":"{{user}}","tid":"{{tenant}}","iss":"{{Authority}}","aud":"{{Audience}}","exp":{{exp}}}""");
        var signature = _current.Rsa.SignData(Encoding.ASCII.GetBytes($"{header}.{payload}"), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        return $"{header}.{payload}.{Base64UrlEncoder.Encode(signature)}";
    }

    /// <summary>An unsigned token (<c>alg: none</c>) with otherwise valid claims.</summary>
    public string CreateUnsignedToken(string user, string tenant)
    {
        static string Encode(string json) => Base64UrlEncoder.Encode(Encoding.UTF8.GetBytes(json));
        var exp = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds();
        var header = Encode("""{"alg":"none","typ":"JWT"}""");
        var payload = Encode($$"""{"sub":"{{user}}","tid":"{{tenant}}","iss":"{{Authority}}","aud":"{{Audience}}","exp":{{exp}}}""");
        return $"{header}.{payload}.";
    }

    public static RsaSecurityKey NewKey() => new(RSA.Create(2048)) { KeyId = Guid.NewGuid().ToString("N") };

    private static object Jwk(RsaSecurityKey key)
    {
        var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(key);
        return new { kty = jwk.Kty, use = "sig", alg = "RS256", kid = jwk.Kid, n = jwk.N, e = jwk.E };
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
