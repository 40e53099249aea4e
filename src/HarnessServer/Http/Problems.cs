using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;

namespace HarnessServer.Http;

/// <summary>Writes RFC 7807 problem details through the one <see cref="IProblemDetailsService"/>.</summary>
internal static class Problems
{
    public static async Task WriteAsync(
        HttpContext context, int status, string? title, string? detail, string? code = null,
        IReadOnlyDictionary<string, object?>? extensions = null)
    {
        context.Response.StatusCode = status;
        var problem = new ProblemDetails { Status = status, Title = title, Detail = detail };
        if (code is not null)
        {
            problem.Extensions["code"] = code;
        }

        foreach (var (key, value) in extensions ?? new Dictionary<string, object?>())
        {
            problem.Extensions[key] = value;
        }

        var service = context.RequestServices.GetRequiredService<IProblemDetailsService>();
        var problemContext = new ProblemDetailsContext { HttpContext = context, ProblemDetails = problem };
        if (!await service.TryWriteAsync(problemContext))
        {
            // The default writer declines a request whose Accept names no JSON (EventSource sends only
            // text/event-stream), and declining would turn the refusal into an empty 500: the problem is written anyway.
            context.RequestServices.GetRequiredService<IOptions<ProblemDetailsOptions>>().Value.CustomizeProblemDetails?.Invoke(problemContext);
            await context.Response.WriteAsJsonAsync(problem, options: null, contentType: "application/problem+json");
        }
    }

    /// <summary>A typed problem result for handlers, with a stable <paramref name="code"/>.</summary>
    public static ProblemHttpResult Result(int status, string code, string detail, string? title = null) =>
        TypedResults.Problem(detail: detail, statusCode: status, title: title,
            extensions: new Dictionary<string, object?> { ["code"] = code });
}
