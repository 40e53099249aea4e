using HarnessServer.Tenancy;

namespace HarnessServer.Identity;

internal static class TenancyExtensions
{
    public static WebApplicationBuilder AddHarnessTenancy(this WebApplicationBuilder builder)
    {
        builder.Services.AddMemoryCache();
        builder.Services.AddSingleton<IdentityProvisioner>();
        return builder;
    }

    /// <summary>
    /// After authentication: the caller becomes the request's <see cref="CurrentUser"/>, its tenant the scope's
    /// <see cref="TenantContext"/>, and its user and teams exist in the database.
    /// </summary>
    public static WebApplication UseHarnessTenancy(this WebApplication app)
    {
        app.Use(async (context, next) =>
        {
            if (context.User.Identity?.IsAuthenticated == true
                && CurrentUser.FromPrincipal(context.User, context.ClaimNames()) is { } user)
            {
                context.Features.Set(user);
                context.RequestServices.GetRequiredService<TenantContext>().Set(user.TenantId);
                await context.RequestServices.GetRequiredService<IdentityProvisioner>().EnsureAsync(user, context.RequestAborted);
            }

            await next(context);
        });
        return app;
    }
}
