using System.Runtime.CompilerServices;
using System.Security.Claims;
using HarnessServer.Http;
using HarnessServer.Identity;
using HarnessServer.Sessions;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;

namespace HarnessServer.WebConsole;

/// <summary>
/// The console's routes that are not pages: its two static files, sign-in and sign-out (form posts checked for their
/// antiforgery token here, since they bind no model), and the live stream a session page listens to.
/// </summary>
internal static class ConsoleRoutes
{
    private static readonly Dictionary<string, string> Assets = new(StringComparer.Ordinal)
    {
        ["console.css"] = "text/css; charset=utf-8",
        ["console.js"] = "text/javascript; charset=utf-8",
    };

    public static void MapConsoleRoutes(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup(ConsoleAuthentication.PathBase).ExcludeFromDescription();
        group.MapGet("/assets/{name}", Asset).AllowAnonymous();
        group.MapPost("/sign-in/oidc", SignInWithIssuerAsync).AllowAnonymous();
        group.MapPost("/sign-in/local", SignInLocallyAsync).AllowAnonymous();
        group.MapPost("/sign-out", SignOutAsync).RequireAuthorization(ConsoleAuthentication.Member);
        group.MapGet("/live/sessions/{id:guid}", LiveSessionAsync).RequireAuthorization(ConsoleAuthentication.Member);
    }

    private static IResult Asset(string name)
    {
        if (!Assets.TryGetValue(name, out var type)
            || typeof(ConsoleRoutes).Assembly.GetManifestResourceStream($"HarnessServer.WebConsole.assets.{name}") is not { } stream)
        {
            return Problems.Result(StatusCodes.Status404NotFound, "asset_not_found", $"The console has no file '{name}'.");
        }

        return Results.Stream(stream, type);
    }

    private static async Task<IResult?> RejectForgeryAsync(HttpContext context, IAntiforgery antiforgery) => context.Request.HasFormContentType && await antiforgery.IsRequestValidAsync(context)
            ? null
            : Problems.Result(StatusCodes.Status400BadRequest, "antiforgery_failed",
                "The form did not carry a valid antiforgery token; reload the page and submit it again.");

    private static async Task<IResult> SignInWithIssuerAsync(HttpContext context, IAntiforgery antiforgery, ConsoleSignIn signIn)
    {
        if (await RejectForgeryAsync(context, antiforgery) is { } rejected)
        {
            return rejected;
        }

        if (!signIn.Oidc)
        {
            return Problems.Result(StatusCodes.Status404NotFound, "no_issuer", "The console has no OpenID Connect issuer configured.");
        }

        var form = await context.Request.ReadFormAsync(context.RequestAborted);
        var properties = new AuthenticationProperties { RedirectUri = ConsoleAuthentication.SafeReturnUrl(form["returnUrl"]) };
        return Results.Challenge(properties, [ConsoleAuthentication.OidcScheme]);
    }

    /// <summary>
    /// Development only: signs in as whoever the form names, through the development issuer, so the cookie holds exactly
    /// the claims a development token for the API would.
    /// </summary>
    private static async Task<IResult> SignInLocallyAsync(HttpContext context, IAntiforgery antiforgery, ConsoleSignIn signIn)
    {
        if (await RejectForgeryAsync(context, antiforgery) is { } rejected)
        {
            return rejected;
        }

        if (!signIn.Local || context.RequestServices.GetService<DevelopmentIssuer>() is not { } issuer)
        {
            return Problems.Result(StatusCodes.Status404NotFound, "no_local_sign_in", "The local sign-in exists only in Development without an issuer.");
        }

        var form = await context.Request.ReadFormAsync(context.RequestAborted);
        var returnUrl = ConsoleAuthentication.SafeReturnUrl(form["returnUrl"]);
        static string[] List(string? value) =>
            (value ?? "").Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        string? Text(string key) => form[key].ToString().Trim() is { Length: > 0 } text ? text : null;

        var user = Text("user");
        var tenant = Text("tenant");
        var roles = form["roles"].Where(r => r is not null).Select(r => r!).ToArray();
        var known = new[] { HarnessRoles.Admin, HarnessRoles.Approver, HarnessRoles.Auditor };
        var error = user is null || tenant is null ? "Name a user and a tenant."
            : roles.FirstOrDefault(r => !known.Contains(r)) is { } unknown ? $"'{unknown}' is not a role of the product."
            : null;
        if (error is null)
        {
            var token = issuer.Issue(new DevelopmentTokenRequest(user, Text("name"), tenant, List(form["teams"]), roles, 8));
            var names = context.RequestServices.GetRequiredService<IOptions<HarnessAuthenticationOptions>>().Value.Claims;
            var claims = new JsonWebTokenHandler().ReadJsonWebToken(token.AccessToken).Claims;
            var identity = new ClaimsIdentity(claims, ConsoleAuthentication.DevelopmentAuthenticationType, names.Name, names.Roles);
            var principal = new ClaimsPrincipal(identity);
            error = CurrentUser.FromPrincipal(principal, names)?.Unstorable(names);
            if (error is null)
            {
                await context.SignInAsync(ConsoleAuthentication.CookieScheme, principal);
                return Results.LocalRedirect(returnUrl);
            }
        }

        return Results.LocalRedirect($"{ConsoleAuthentication.SignInPath}?error={Uri.EscapeDataString(error)}&returnUrl={Uri.EscapeDataString(returnUrl)}");
    }

    private static async Task<IResult> SignOutAsync(HttpContext context, IAntiforgery antiforgery)
    {
        if (await RejectForgeryAsync(context, antiforgery) is { } rejected)
        {
            return rejected;
        }

        await context.SignOutAsync(ConsoleAuthentication.CookieScheme);
        return Results.LocalRedirect(ConsoleAuthentication.SignInPath + "?signedOut=1");
    }

    /// <summary>
    /// Tells a session page that one of its calls changed (it then fetches itself again): the same per-session events
    /// as <c>GET /v1/sessions/{id}/events</c>, for the session's owner (or an admin) only.
    /// </summary>
    private static async Task<IResult> LiveSessionAsync(
        Guid id, CurrentUser user, SessionService sessions, SessionEvents events, CancellationToken ct)
    {
        // Subscribe before the check so that a change between the page's render and this stream is not lost.
        var subscription = events.Subscribe(id);
        try
        {
            await sessions.GetWithHistoryAsync(id, user, ct);
        }
        catch
        {
            subscription.Dispose();
            throw;
        }

        return TypedResults.ServerSentEvents(ChangesAsync(subscription, ct), eventType: "changed");
    }

    private static async IAsyncEnumerable<string> ChangesAsync(SessionEvents.Subscription subscription, [EnumeratorCancellation] CancellationToken ct)
    {
        using (subscription)
        {
            // The first event makes the page catch up with anything that changed before it subscribed.
            yield return "subscribed";
            await foreach (var change in subscription.Reader.ReadAllAsync(ct))
            {
                yield return $"{change.Id}:{change.Status}";
            }
        }
    }
}
