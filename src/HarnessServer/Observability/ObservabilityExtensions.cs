using Npgsql;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace HarnessServer.Observability;

internal static class ObservabilityExtensions
{
    public static WebApplicationBuilder AddHarnessObservability(this WebApplicationBuilder builder)
    {
        // Logs go to OpenTelemetry only; the console stays quiet unless a logging provider is configured.
        builder.Logging.ClearProviders();
        builder.Logging.AddOpenTelemetry(logging =>
        {
            logging.IncludeFormattedMessage = true;
            logging.IncludeScopes = true;
        });

        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(HarnessTelemetry.Name))
            .WithMetrics(metrics => metrics
                .AddMeter(HarnessTelemetry.Name)
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddRuntimeInstrumentation()
                .AddNpgsqlInstrumentation());

        if (!string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            // Traces only when they are exported: a sampled activity that nobody reads still costs every request,
            // pipeline stage and database command its allocation and tags.
            otel.WithTracing(tracing => tracing
                    .AddSource(HarnessTelemetry.Name)
                    .AddAspNetCoreInstrumentation()
                    .AddHttpClientInstrumentation()
                    .AddNpgsql())
                .UseOtlpExporter();
        }

        return builder;
    }
}
