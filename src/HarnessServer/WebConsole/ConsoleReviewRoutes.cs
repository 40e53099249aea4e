using System.Globalization;
using HarnessServer.Audit;
using HarnessServer.Http;
using HarnessServer.Identity;

namespace HarnessServer.WebConsole;

/// <summary>The reviewer's routes that are not pages: the audit export as a download.</summary>
internal static class ConsoleReviewRoutes
{
    public static void MapConsoleReviewRoutes(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup(ConsoleAuthentication.PathBase).ExcludeFromDescription();
        group.MapGet("/audit/export", Export).RequireAuthorization(ConsoleAuthentication.Auditor);
    }

    /// <summary>
    /// The lines of <c>GET /v1/audit/export</c> (the same <see cref="AuditExport"/>), narrowed by the audit page's
    /// filters. A GET that changes nothing, so it needs no antiforgery token; the cookie is SameSite=Lax and path-bound.
    /// </summary>
    private static IResult Export(HttpContext context, CurrentUser caller, AuditExport export, TimeProvider time)
    {
        var (filter, error) = AuditFilterQuery.Read(context.Request.Query).Parse();
        if (filter is null)
        {
            return Problems.Result(StatusCodes.Status400BadRequest, "invalid_filter", error!);
        }

        var stamp = time.GetUtcNow().ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        context.Response.Headers.ContentDisposition = $"attachment; filename=\"audit-{stamp}{(filter.IsEmpty ? "" : "-filtered")}.jsonl\"";
        return TypedResults.Stream(
            stream => export.WriteAsync(caller.TenantId, 1, long.MaxValue, filter, stream, context.RequestAborted),
            "application/x-ndjson");
    }
}
