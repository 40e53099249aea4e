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
        SecurityTokenInvalidTypeException => "The token's type (typ header) is not an access token's.",
        SecurityTokenMalformedException => "The token is malformed.",
        SecurityTokenException => "The token is invalid.",
        _ => "The token could not be validated.",
    };

    /// <summary>
    /// The reason when the bearer token is signed with an algorithm outside the accepted ones (the validator reports
    /// that only as a signature that no key verifies), or null.
    /// </summary>
    public static string? UnacceptedAlgorithm(HttpRequest request, IEnumerable<string>? accepted)
    {
        var header = request.Headers.Authorization.ToString();
        if (accepted is null || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        try
        {
            var algorithm = new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(header["Bearer ".Length..].Trim()).Alg;
            // An unsigned token ("none") is reported as unsigned by the validator.
            return string.IsNullOrEmpty(algorithm) || algorithm == SecurityAlgorithms.None || accepted.Contains(algorithm, StringComparer.Ordinal)
                ? null
                : $"The token's signing algorithm '{algorithm}' is not accepted (accepted: {string.Join(", ", accepted)}).";
        }
        catch (ArgumentException)
        {
            // Not a JWS the handler can read (SecurityTokenMalformedException is one): the validator's reason stands.
            return null;
        }
    }

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
