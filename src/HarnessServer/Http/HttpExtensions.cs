using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace HarnessServer.Http;

internal static class HttpExtensions
{
    public static WebApplicationBuilder AddHarnessHttp(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<HarnessHttpOptions>()
            .BindConfiguration("Harness")
            .Validate(o => o.MaxRequestBodyBytes > 0, "Harness:MaxRequestBodyBytes must be positive.")
            .ValidateOnStart();

        builder.Services.AddProblemDetails(options => options.CustomizeProblemDetails = context =>
        {
            context.ProblemDetails.Instance ??= context.HttpContext.Request.Path;
            context.ProblemDetails.Extensions["traceId"] = context.HttpContext.TraceIdentifier;
        });
        builder.Services.AddExceptionHandler<ProblemExceptionHandler>();
        builder.Services.AddSingleton<DatabaseFaults>();

        // Binding failures throw so that ProblemExceptionHandler can say precisely what was wrong with the body.
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.Configure<JsonOptions>(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.CamelCase;
            o.SerializerOptions.DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull;
            o.SerializerOptions.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower));
            o.SerializerOptions.Converters.Add(new StorableStringConverter());
        });

        var maxBody = builder.Configuration.GetValue<long?>("Harness:MaxRequestBodyBytes") ?? 10 * 1024 * 1024;
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = maxBody);
        builder.WebHost.UseShutdownTimeout(TimeSpan.FromSeconds(30));
        builder.Services.AddOpenApi(options => OpenApiConventions.Configure(options, builder.Configuration));
        builder.Services.AddHarnessHealth();
        builder.Services.AddSingleton(TimeProvider.System);
        return builder;
    }

    public static WebApplication UseHarnessHttp(this WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages(DescribeEmptyErrorAsync);
        app.Use(EnforceBodyLimitAsync);
        return app;
    }

    // Content-Length over the limit is refused before the body is read; bodies without a length are capped by
    // IHttpMaxRequestBodySizeFeature, whose overflow surfaces as a BadHttpRequestException(413).
    private static Task EnforceBodyLimitAsync(HttpContext context, Func<Task> next)
    {
        var limit = context.RequestServices.GetRequiredService<IOptions<HarnessHttpOptions>>().Value.MaxRequestBodyBytes;
        if (context.Request.ContentLength > limit)
        {
            return Problems.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, "Request body too large",
                $"The request body is {context.Request.ContentLength} bytes; the limit is {limit} bytes.");
        }

        var feature = context.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (feature is { IsReadOnly: false })
        {
            feature.MaxRequestBodySize = limit;
        }

        return next();
    }

    private static Task DescribeEmptyErrorAsync(StatusCodeContext context)
    {
        var http = context.HttpContext;
        var request = http.Request;
        (string? title, string? detail) = http.Response.StatusCode switch
        {
            StatusCodes.Status404NotFound => ("Not found", $"No resource matches {request.Method} {request.Path}."),
            StatusCodes.Status405MethodNotAllowed => ("Method not allowed",
                $"{request.Method} is not allowed on {request.Path}" +
                (http.Response.Headers.Allow.Count > 0 ? $"; allowed: {http.Response.Headers.Allow}." : ".")),
            StatusCodes.Status401Unauthorized => ("Unauthorized", UnauthenticatedReason.Describe(http)),
            StatusCodes.Status403Forbidden => ("Forbidden", $"The caller's roles do not allow {request.Method} {request.Path}."),
            StatusCodes.Status415UnsupportedMediaType => ("Unsupported media type",
                $"Content-Type '{request.ContentType}' is not accepted here; send application/json."),
            _ => (null, null),
        };
        return Problems.WriteAsync(http, http.Response.StatusCode, title, detail);
    }
}
