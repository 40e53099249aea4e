using System.Text.Json;
using HarnessServer.Errors;
using Microsoft.AspNetCore.Diagnostics;
using Npgsql;

namespace HarnessServer.Http;

/// <summary>
/// Turns exceptions into problem details: what the client sent wrong becomes a 4xx with a precise detail,
/// an unavailable dependency a 503, anything else a 500 without internals.
/// </summary>
internal sealed class ProblemExceptionHandler(ILogger<ProblemExceptionHandler> logger, DatabaseFaults faults) : IExceptionHandler
{
    /// <summary>The <c>Retry-After</c> of a 503 for an unavailable database or audit trail: about one Patroni loop.</summary>
    public const int RetryAfterSeconds = 2;

    /// <summary>What a client is told when the database failed under its request (a primary switch, a lost connection).</summary>
    public const string DatabaseUnavailableDetail =
        "The database is unavailable (a failover may be under way). Retry after the Retry-After seconds. A request " +
        "that was changing something may or may not have been committed: read its state before repeating it.";

    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken cancellationToken)
    {
        var aborted = context.RequestAborted.IsCancellationRequested;
        var (status, title, detail, code) = exception switch
        {
            BadHttpRequestException bad => (bad.StatusCode, TitleFor(bad.StatusCode), Describe(bad), "bad_request"),
            JsonException json => (400, "Malformed JSON", json.Message, "malformed_json"),
            // A fault of the connection, wrapped or not (EF, the audit writer): the dedicated code, and the pools are cleared.
            _ when !aborted && exception is not HarnessError { Kind: not ErrorKind.Unavailable } && faults.Report(exception) =>
                (503, "Database unavailable", DatabaseUnavailableDetail, "database_unavailable"),
            HarnessError error => (StatusOf(error.Kind), error.Title, error.Message, error.Code),
            NpgsqlException or TimeoutException when !aborted =>
                (503, "Service unavailable", "The database is unavailable; nothing was changed. Retry later.", "database_unavailable"),
            OperationCanceledException when context.RequestAborted.IsCancellationRequested =>
                (499, "Client closed request", "The client closed the request.", "cancelled"),
            _ => (500, "Internal error", "An unexpected error occurred; the trace id identifies it in the server's logs.", "internal_error"),
        };

        if (status >= 500)
        {
            logger.LogError(exception, "Request {Method} {Path} failed with {Status}", context.Request.Method, context.Request.Path, status);
        }
        else
        {
            logger.LogInformation("Request {Method} {Path} refused with {Status}: {Detail}", context.Request.Method, context.Request.Path, status, detail);
        }

        if (context.Response.HasStarted)
        {
            return false;
        }

        if (code is "database_unavailable" or "audit_unavailable")
        {
            context.Response.Headers.RetryAfter = RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        await Problems.WriteAsync(context, status, title, detail, code, (exception as HarnessError)?.Extensions);
        return true;
    }

    /// <summary>The HTTP status of each kind of domain refusal.</summary>
    public static int StatusOf(ErrorKind kind) => kind switch
    {
        ErrorKind.Invalid => StatusCodes.Status400BadRequest,
        ErrorKind.Forbidden => StatusCodes.Status403Forbidden,
        ErrorKind.NotFound => StatusCodes.Status404NotFound,
        ErrorKind.Conflict => StatusCodes.Status409Conflict,
        ErrorKind.PreconditionFailed => StatusCodes.Status412PreconditionFailed,
        ErrorKind.UpstreamFailed => StatusCodes.Status502BadGateway,
        ErrorKind.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };

    private static string TitleFor(int status) => status switch
    {
        413 => "Request body too large",
        415 => "Unsupported media type",
        _ => "Bad request",
    };

    // Kestrel's message names the parameter; the JSON reader's names the path, line and byte of the fault.
    private static string Describe(BadHttpRequestException bad) =>
        bad.InnerException is JsonException json ? $"{bad.Message} {json.Message}" : bad.Message;
}
