using HarnessServer.Identity;

namespace HarnessServer.Api;

internal static class IdentityEndpoints
{
    public static IEndpointRouteBuilder MapIdentity(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/me", (CurrentUser user) => TypedResults.Ok(new MeResponse(user.UserId, user.TenantId, user.Teams, user.Roles)))
            .RequireAuthorization(HarnessPolicies.User)
            .WithName("GetMe")
            .WithSummary("The caller: user id, tenant, teams and roles from the token.")
            .WithTags("Identity");

        if (app.ServiceProvider.GetService<DevelopmentIssuer>() is { } issuer)
        {
            app.MapPost("/dev/token", (DevelopmentTokenRequest? request) => TypedResults.Ok(issuer.Issue(request ?? new DevelopmentTokenRequest())))
                .AllowAnonymous()
                .WithName("CreateDevelopmentToken")
                .WithSummary("Development only: a signed token for any user, tenant, teams and roles.")
                .WithTags("Identity");
        }

        return app;
    }
}
