using System.Diagnostics;
using System.Globalization;

namespace HarnessServer.WebConsole;

/// <summary>
/// <c>Server-Timing: app;dur=…</c> on every console response: milliseconds from this middleware (after authentication
/// and tenancy) to the first byte of the response, which for a server-rendered page is the whole render with its
/// queries. The browser's developer tools and <c>bench/run-console.sh</c> read it.
/// </summary>
internal static class ConsoleServerTiming
{
    public static Task MeasureAsync(HttpContext context, Func<Task> next)
    {
        if (context.Request.Path.StartsWithSegments(ConsoleAuthentication.PathBase))
        {
            var started = Stopwatch.GetTimestamp();
            context.Response.OnStarting(() =>
            {
                var elapsed = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                context.Response.Headers["Server-Timing"] = "app;dur=" + elapsed.ToString("0.0", CultureInfo.InvariantCulture);
                return Task.CompletedTask;
            });
        }

        return next();
    }
}
