using HarnessServer.Http;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.IdentityModel.Tokens;

namespace HarnessServer.Identity;

/// <summary>Says precisely why a request was not authenticated, without echoing the token.</summary>
internal static class AuthenticationFailure
{
    public static void Record(HttpContext context, string reason) => UnauthenticatedReason.Record(context, reason);

    public static string Reason(Exception exception) => exception switch
    {
        SecurityTokenExpiredException => "The token has expired.",
        SecurityTokenNotYetValidException => "The token is not valid yet.",
        SecurityTokenInvalidAudienceException => "The token's audience is not accepted by this server.",
        SecurityTokenInvalidIssuerException => "The token's issuer is not the configured authority.",
        SecurityTokenException when exception.Message.Contains("IDX10504", StringComparison.Ordinal) =>
            "The token is unsigned; signed tokens are required.",
        SecurityTokenSignatureKeyNotFoundException => "The token's signature does not verify with any key the issuer publishes.",
        SecurityTokenInvalidSignatureException => "The token's signature is invalid.",
        SecurityTokenInvalidAlgorithmException => "The token's signing algorithm is not accepted.",
        SecurityTokenMalformedException => "The token is malformed.",
        SecurityTokenException => "The token is invalid.",
        _ => "The token could not be validated.",
    };

    /// <summary>Writes the 401 as a problem body while keeping the standard WWW-Authenticate header.</summary>
    public static async Task ChallengeAsync(JwtBearerChallengeContext context)
    {
        if (context.AuthenticateFailure is { } failure && !UnauthenticatedReason.IsRecorded(context.HttpContext))
        {
            Record(context.HttpContext, Reason(failure));
        }

        context.HandleResponse();
        context.Response.Headers.WWWAuthenticate = context.AuthenticateFailure is null
            ? "Bearer"
            : "Bearer error=\"invalid_token\"";
        await Problems.WriteAsync(context.HttpContext, StatusCodes.Status401Unauthorized, "Unauthorized",
            UnauthenticatedReason.Describe(context.HttpContext), "unauthenticated");
    }
}
