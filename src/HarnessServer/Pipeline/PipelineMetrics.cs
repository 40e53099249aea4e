using System.Diagnostics.Metrics;
using HarnessServer.Observability;

namespace HarnessServer.Pipeline;

internal static class PipelineMetrics
{
    public static readonly Counter<long> Calls = HarnessTelemetry.Meter.CreateCounter<long>(
        "harness.tool_calls", description: "Tool calls by tool and final status.");

    public static readonly Histogram<double> Duration = HarnessTelemetry.Meter.CreateHistogram<double>(
        "harness.tool_call.duration", unit: "ms", description: "Time from proposal to response, per tool.");
}
