using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace HarnessServer.Observability;

/// <summary>The server's own <see cref="ActivitySource"/> and <see cref="Meter"/>, shared by every feature.</summary>
internal static class HarnessTelemetry
{
    public const string Name = "HarnessServer";

    public static readonly ActivitySource ActivitySource = new(Name);
    public static readonly Meter Meter = new(Name);
}
