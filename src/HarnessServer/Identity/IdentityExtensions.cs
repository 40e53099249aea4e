using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.Identity.Web;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;

namespace HarnessServer.Identity;

internal static class IdentityExtensions
{
    public static WebApplicationBuilder AddHarnessIdentity(this WebApplicationBuilder builder)
    {
        var section = builder.Configuration.GetSection("Authentication");
        var options = section.Get<HarnessAuthenticationOptions>() ?? new HarnessAuthenticationOptions();
        builder.Services.AddOptions<HarnessAuthenticationOptions>().BindConfiguration("Authentication");

        var azureAd = builder.Configuration.GetSection("AzureAd");
        var useEntra = !string.IsNullOrWhiteSpace(azureAd["ClientId"]);
        var useDevelopmentIssuer = !useEntra && string.IsNullOrWhiteSpace(options.Authority) && builder.Environment.IsDevelopment();

        if (!useEntra && !useDevelopmentIssuer && string.IsNullOrWhiteSpace(options.Authority))
        {
            throw new InvalidOperationException(
                "Authentication:Authority (an OIDC issuer URL) or AzureAd:ClientId is required outside Development.");
        }

        if (string.IsNullOrWhiteSpace(options.Audience))
        {
            throw new InvalidOperationException("Authentication:Audience must not be empty.");
        }

        options.Check();

        if (useEntra)
        {
            // Entra ID: Microsoft.Identity.Web configures issuer validation for the tenant(s) it is given.
            builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme)
                .AddMicrosoftIdentityWebApi(azureAd, JwtBearerDefaults.AuthenticationScheme);
        }
        else
        {
            builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer();
        }

        if (useDevelopmentIssuer)
        {
            builder.Services.AddSingleton<DevelopmentIssuer>();
        }

        builder.Services.AddSingleton<IPostConfigureOptions<JwtBearerOptions>>(services =>
            new ConfigureJwtBearer(options, useEntra, services.GetService<DevelopmentIssuer>()));
        builder.Services.AddAuthorization(HarnessPolicies.Add);
        return builder;
    }

    private sealed class ConfigureJwtBearer(HarnessAuthenticationOptions harness, bool useEntra, DevelopmentIssuer? developmentIssuer)
        : IPostConfigureOptions<JwtBearerOptions>
    {
        // typ is optional (many issuers leave it out); when set it must say access token (RFC 9068) or plain JWT, so
        // that another kind of token from the same issuer (a logout token, a security event token) is not one.
        private string ValidateType(string? type, SecurityToken token, TokenValidationParameters parameters)
        {
            if (string.IsNullOrEmpty(type) || harness.Types.Contains(type, StringComparer.OrdinalIgnoreCase))
            {
                return type ?? "";
            }

            throw new SecurityTokenInvalidTypeException($"The token type (typ) '{type}' is not accepted; expected one of {string.Join(", ", harness.Types)}.")
            {
                InvalidType = type,
            };
        }

        public void PostConfigure(string? name, JwtBearerOptions options)
        {
            if (name != JwtBearerDefaults.AuthenticationScheme)
            {
                return;
            }

            options.MapInboundClaims = false;
            options.TokenValidationParameters.NameClaimType = harness.Claims.Name;
            options.TokenValidationParameters.RoleClaimType = harness.Claims.Roles;
            options.TokenValidationParameters.RequireSignedTokens = true;
            options.TokenValidationParameters.RequireExpirationTime = true;
            options.TokenValidationParameters.ValidateLifetime = true;
            options.TokenValidationParameters.ClockSkew = TimeSpan.FromSeconds(30);
            // Only the algorithms configured, whatever else the issuer's keys could verify (RS384 with an RS256 key).
            options.TokenValidationParameters.ValidAlgorithms = harness.Algorithms;
            options.TokenValidationParameters.TypeValidator = ValidateType;

            if (!useEntra)
            {
                options.Audience = harness.Audience;
                options.TokenValidationParameters.ValidAudience = harness.Audience;
                options.TokenValidationParameters.ValidateAudience = true;
                options.TokenValidationParameters.ValidateIssuer = true;
                if (developmentIssuer is not null)
                {
                    developmentIssuer.Configure(options, harness.Audience);
                }
                else
                {
                    options.Authority = harness.Authority;
                    options.RequireHttpsMetadata = harness.RequireHttpsMetadata;
                    options.RefreshOnIssuerKeyNotFound = true;
                    options.ConfigurationManager = new ConfigurationManager<OpenIdConnectConfiguration>(
                        harness.Authority!.TrimEnd('/') + "/.well-known/openid-configuration",
                        new OpenIdConnectConfigurationRetriever(),
                        new HttpDocumentRetriever { RequireHttps = harness.RequireHttpsMetadata })
                    {
                        RefreshInterval = harness.KeyRefreshInterval,
                    };
                }
            }

            var events = options.Events ?? new JwtBearerEvents();
            var validated = events.OnTokenValidated;
            events.OnTokenValidated = async context =>
            {
                await validated(context);
                var user = context.Principal is null ? null : CurrentUser.FromPrincipal(context.Principal, harness.Claims);
                if (user is null)
                {
                    var reason = $"The token has no '{harness.Claims.Tenant}' (tenant) or '{harness.Claims.User}' (user) claim.";
                    AuthenticationFailure.Record(context.HttpContext, reason);
                    context.Fail(reason);
                }
                else if (user.Unstorable(harness.Claims) is { } unstorable)
                {
                    AuthenticationFailure.Record(context.HttpContext, unstorable);
                    context.Fail(unstorable);
                }
            };
            var failed = events.OnAuthenticationFailed;
            events.OnAuthenticationFailed = async context =>
            {
                await failed(context);
                var algorithm = context.Exception is SecurityTokenInvalidSignatureException
                    ? AuthenticationFailure.UnacceptedAlgorithm(context.Request, context.Options.TokenValidationParameters.ValidAlgorithms)
                    : null;
                AuthenticationFailure.Record(context.HttpContext, algorithm ?? AuthenticationFailure.Reason(context.Exception));
            };
            events.OnChallenge = AuthenticationFailure.ChallengeAsync;
            options.Events = events;
        }
    }
}

/// <summary>The body of <c>GET /v1/me</c>.</summary>
internal sealed record MeResponse(string User, string Tenant, IReadOnlyList<string> Teams, IReadOnlyList<string> Roles);
