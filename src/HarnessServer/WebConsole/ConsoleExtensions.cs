using HarnessServer.WebConsole.Components;
using HarnessServer.Identity;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;

namespace HarnessServer.WebConsole;

/// <summary>
/// The web console under <c>/console</c>: Razor components rendered on the server, a cookie session of its own signed
/// in with the OpenID Connect code flow and PKCE (or, in Development without an issuer, the local sign-in), and the
/// few routes its pages post to or read live updates from.
/// </summary>
internal static class ConsoleExtensions
{
    public static WebApplicationBuilder AddHarnessConsole(this WebApplicationBuilder builder)
    {
        var options = builder.Configuration.GetSection("Harness:Console").Get<ConsoleOptions>() ?? new ConsoleOptions();
        var harness = builder.Configuration.GetSection("Authentication").Get<HarnessAuthenticationOptions>() ?? new HarnessAuthenticationOptions();
        var authority = string.IsNullOrWhiteSpace(options.Authority) ? harness.Authority : options.Authority;
        var useOidc = !string.IsNullOrWhiteSpace(options.ClientId);
        // The local sign-in exists exactly where the development issuer does: Development with no issuer configured.
        var useLocal = builder.Services.Any(d => d.ServiceType == typeof(DevelopmentIssuer));
        if (useOidc && string.IsNullOrWhiteSpace(authority))
        {
            throw new InvalidOperationException(
                "Harness:Console:ClientId is set but there is no issuer: set Harness:Console:Authority or Authentication:Authority.");
        }

        if (!useOidc && !useLocal)
        {
            // No way to sign in, so no console: its routes are not mapped at all.
            return builder;
        }

        if (options.SessionLifetime <= TimeSpan.Zero || options.SessionLifetime > TimeSpan.FromDays(1))
        {
            throw new InvalidOperationException("Harness:Console:SessionLifetime must be positive and at most one day.");
        }

        builder.Services.AddSingleton(new ConsoleSignIn(useOidc, useLocal, authority));
        builder.Services.AddRazorComponents();
        builder.Services.AddAntiforgery(o =>
        {
            o.Cookie.Name = "harness.console.antiforgery";
            o.Cookie.Path = ConsoleAuthentication.PathBase;
            o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
        });

        var authentication = builder.Services.AddAuthentication();
        authentication.AddCookie(ConsoleAuthentication.CookieScheme, o =>
        {
            o.Cookie.Name = "harness.console";
            // Sent to the console's paths only: /v1/* never sees it (and would not accept it anyway).
            o.Cookie.Path = ConsoleAuthentication.PathBase;
            o.Cookie.HttpOnly = true;
            o.Cookie.SameSite = SameSiteMode.Lax;
            o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            o.LoginPath = ConsoleAuthentication.SignInPath;
            o.AccessDeniedPath = "/console/denied";
            o.ReturnUrlParameter = "returnUrl";
            o.ExpireTimeSpan = options.SessionLifetime;
            o.SlidingExpiration = true;
        });

        if (useOidc)
        {
            authentication.AddOpenIdConnect(ConsoleAuthentication.OidcScheme, o =>
            {
                o.SignInScheme = ConsoleAuthentication.CookieScheme;
                o.Authority = authority;
                o.ClientId = options.ClientId;
                o.ClientSecret = string.IsNullOrEmpty(options.ClientSecret) ? null : options.ClientSecret;
                o.RequireHttpsMetadata = options.RequireHttpsMetadata ?? harness.RequireHttpsMetadata;
                o.ResponseType = OpenIdConnectResponseType.Code;
                o.UsePkce = true;
                // The code comes back on a top-level GET, so the correlation and nonce cookies can be SameSite=Lax.
                o.ResponseMode = OpenIdConnectResponseMode.Query;
                o.CallbackPath = ConsoleAuthentication.CallbackPath;
                o.SignedOutCallbackPath = "/console/signout-callback-oidc";
                o.RemoteSignOutPath = "/console/signout-oidc";
                o.CorrelationCookie.SameSite = SameSiteMode.Lax;
                o.CorrelationCookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
                o.NonceCookie.SameSite = SameSiteMode.Lax;
                o.NonceCookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
                // The id token's own claims, named as the API names them: tenant, teams and roles exactly as for a bearer.
                o.MapInboundClaims = false;
                o.GetClaimsFromUserInfoEndpoint = false;
                o.SaveTokens = false;
                o.Scope.Clear();
                foreach (var scope in ConsoleOptions.DefaultScopes.Concat(options.Scopes ?? []).Distinct(StringComparer.Ordinal))
                {
                    o.Scope.Add(scope);
                }

                o.TokenValidationParameters.NameClaimType = harness.Claims.Name;
                o.TokenValidationParameters.RoleClaimType = harness.Claims.Roles;
                o.TokenValidationParameters.ValidAlgorithms = harness.Algorithms;
                o.Events.OnTokenValidated = context =>
                {
                    var user = context.Principal is null ? null : CurrentUser.FromPrincipal(context.Principal, harness.Claims);
                    var problem = user is null
                        ? $"The id token has no '{harness.Claims.Tenant}' (tenant) or '{harness.Claims.User}' (user) claim."
                        : user.Unstorable(harness.Claims);
                    if (problem is not null)
                    {
                        context.Fail(problem);
                    }

                    return Task.CompletedTask;
                };
                o.Events.OnRemoteFailure = context =>
                {
                    // The sign-in page says what went wrong instead of an unhandled 500.
                    var logger = context.HttpContext.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("HarnessServer.WebConsole");
                    logger.LogWarning(context.Failure, "Console sign-in failed");
                    context.Response.Redirect(ConsoleAuthentication.SignInPath + "?error=" +
                        Uri.EscapeDataString(context.Failure?.Message ?? "The sign-in did not complete."));
                    context.HandleResponse();
                    return Task.CompletedTask;
                };
            });
        }

        builder.Services.AddAuthorizationBuilder()
            .AddPolicy(ConsoleAuthentication.Member, p => p
                .AddAuthenticationSchemes(ConsoleAuthentication.CookieScheme).RequireAuthenticatedUser())
            .AddPolicy(ConsoleAuthentication.Approver, p => p
                .AddAuthenticationSchemes(ConsoleAuthentication.CookieScheme).RequireAuthenticatedUser()
                .RequireRole(HarnessRoles.Approver, HarnessRoles.Admin))
            .AddPolicy(ConsoleAuthentication.Auditor, p => p
                .AddAuthenticationSchemes(ConsoleAuthentication.CookieScheme).RequireAuthenticatedUser()
                .RequireRole(HarnessRoles.Auditor, HarnessRoles.Admin));
        return builder;
    }

    /// <summary>The console's routes, after authentication, authorization and tenancy (its forms need antiforgery).</summary>
    public static WebApplication MapHarnessConsole(this WebApplication app)
    {
        if (app.Services.GetService<ConsoleSignIn>() is null)
        {
            return app;
        }

        app.Use(ConsoleServerTiming.MeasureAsync);
        app.Use(ConsoleSecurityHeaders.ApplyAsync);
        app.UseAntiforgery();
        app.MapConsoleRoutes();
        app.MapConsoleReviewRoutes();
        app.MapRazorComponents<App>();
        return app;
    }
}

/// <summary>How people sign in to the console here, and the issuer's origin (which the CSP lets forms redirect to).</summary>
internal sealed record ConsoleSignIn(bool Oidc, bool Local, string? Authority);
