namespace HarnessServer.WebConsole;

/// <summary>
/// A strict Content-Security-Policy and its companions on every console response: scripts and styles come only from
/// the console's own files (no inline code, no nonces), nothing may frame it, and forms post only to this server or,
/// for sign-in, on to the issuer.
/// </summary>
internal static class ConsoleSecurityHeaders
{
    public static Task ApplyAsync(HttpContext context, Func<Task> next)
    {
        if (context.Request.Path.StartsWithSegments(ConsoleAuthentication.PathBase))
        {
            var signIn = context.RequestServices.GetRequiredService<ConsoleSignIn>();
            var policy = Policy(signIn.Authority);
            // Set when the response starts: the exception handler clears headers before it writes a problem.
            context.Response.OnStarting(() =>
            {
                var headers = context.Response.Headers;
                headers.ContentSecurityPolicy = policy;
                headers.XContentTypeOptions = "nosniff";
                headers.XFrameOptions = "DENY";
                headers["Referrer-Policy"] = "no-referrer";
                headers["Cross-Origin-Opener-Policy"] = "same-origin";
                headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()";
                if (!headers.ContainsKey("Cache-Control"))
                {
                    headers.CacheControl = "no-store";
                }

                return Task.CompletedTask;
            });
        }

        return next();
    }

    public static string Policy(string? authority)
    {
        var issuer = authority is not null && Uri.TryCreate(authority, UriKind.Absolute, out var uri)
            ? " " + uri.GetLeftPart(UriPartial.Authority)
            : "";
        return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
               $"form-action 'self'{issuer}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
    }
}
