using System.Security.Claims;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace HarnessServer.Identity;

/// <summary>
/// Development only, and only when no authority is configured: signs tokens with a local RSA key kept in
/// <c>.data/dev-issuer-key.pem</c> so a newcomer needs no identity provider. It is never registered outside
/// Development, so neither the key nor <c>POST /dev/token</c> exists there.
/// </summary>
internal sealed class DevelopmentIssuer
{
    public const string Issuer = "harness-development";

    private readonly RsaSecurityKey _key;
    private readonly HarnessAuthenticationOptions _options;
    private readonly TimeProvider _time;

    public DevelopmentIssuer(IHostEnvironment environment, IOptions<HarnessAuthenticationOptions> options, TimeProvider time)
    {
        if (!environment.IsDevelopment())
        {
            throw new InvalidOperationException("The development issuer exists only in Development.");
        }

        _options = options.Value;
        _time = time;
        var path = Path.Combine(environment.ContentRootPath, ".data", "dev-issuer-key.pem");
        var rsa = RSA.Create();
        if (File.Exists(path))
        {
            rsa.ImportFromPem(File.ReadAllText(path));
        }
        else
        {
            rsa.KeySize = 2048;
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            WriteOwnerOnly(path, rsa.ExportRSAPrivateKeyPem());
        }

        _key = new RsaSecurityKey(rsa) { KeyId = "harness-development" };
    }

    /// <summary>
    /// Owner-only from its creation (the key mints tokens for any tenant): the file is created with mode 0600, never
    /// written under the umask's mode and narrowed afterwards, which left a window for another user to open it.
    /// </summary>
    internal static void WriteOwnerOnly(string path, string pem)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using var file = new FileStream(path, options);
        file.Write(System.Text.Encoding.ASCII.GetBytes(pem));
    }

    public void Configure(JwtBearerOptions options, string audience)
    {
        options.TokenValidationParameters.ValidIssuer = Issuer;
        options.TokenValidationParameters.ValidAudience = audience;
        options.TokenValidationParameters.IssuerSigningKey = _key;
        options.TokenValidationParameters.ValidAlgorithms = [SecurityAlgorithms.RsaSha256];
    }

    public DevelopmentTokenResponse Issue(DevelopmentTokenRequest request)
    {
        var claims = _options.Claims;
        var now = _time.GetUtcNow();
        var expires = now.AddHours(Math.Clamp(request.Hours ?? 8, 1, 24));
        var subject = new ClaimsIdentity([
            new Claim(claims.User, request.User ?? "alice"),
            new Claim(claims.Name, request.Name ?? request.User ?? "Alice"),
            new Claim(claims.Tenant, request.Tenant ?? "acme"),
        ]);
        foreach (var team in request.Teams ?? ["platform"])
        {
            subject.AddClaim(new Claim(claims.Teams, team));
        }

        foreach (var role in request.Roles ?? [HarnessRoles.Admin])
        {
            subject.AddClaim(new Claim(claims.Roles, role));
        }

        var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = _options.Audience,
            Subject = subject,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = expires.UtcDateTime,
            SigningCredentials = new SigningCredentials(_key, SecurityAlgorithms.RsaSha256),
        });
        return new DevelopmentTokenResponse(token, expires);
    }
}

/// <summary>Who the development token speaks for; every field has a default (alice of acme, team platform, admin).</summary>
internal sealed record DevelopmentTokenRequest(
    string? User = null, string? Name = null, string? Tenant = null,
    IReadOnlyList<string>? Teams = null, IReadOnlyList<string>? Roles = null, int? Hours = null);

internal sealed record DevelopmentTokenResponse(string AccessToken, DateTimeOffset ExpiresAt);
