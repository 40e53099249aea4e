using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using HarnessServer.Observability;

namespace HarnessServer.Audit;

/// <summary>The audit instruments on <see cref="HarnessTelemetry.Meter"/>.</summary>
internal static class AuditMetrics
{
    private static readonly ConcurrentDictionary<AuditChain, byte> Chains = new();

    /// <summary>From AppendAsync to durable commit, per call.</summary>
    public static readonly Histogram<double> AppendDuration =
        HarnessTelemetry.Meter.CreateHistogram<double>("harness.audit.append.duration", "ms", "Time from AppendAsync to the durable commit of its events.");

    public static readonly Histogram<int> BatchSize =
        HarnessTelemetry.Meter.CreateHistogram<int>("harness.audit.batch.size", "{append}", "Appends committed in one group-commit transaction.");

    public static readonly Histogram<double> VerifyDuration =
        HarnessTelemetry.Meter.CreateHistogram<double>("harness.audit.verify.duration", "ms", "Time to verify one tenant's chain.");

    static AuditMetrics() =>
        HarnessTelemetry.Meter.CreateObservableGauge("harness.audit.chain.head", ObserveHeads, "{event}",
            "The last committed seq of each tenant's chain, as this process last wrote it.");

    public static void Track(AuditChain chain) => Chains.TryAdd(chain, 0);

    public static void Untrack(AuditChain chain) => Chains.TryRemove(chain, out _);

    private static IEnumerable<Measurement<long>> ObserveHeads()
    {
        var heads = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var chain in Chains.Keys)
        {
            foreach (var (tenant, seq) in chain.CommittedHeads)
            {
                heads[tenant] = Math.Max(seq, heads.GetValueOrDefault(tenant));
            }
        }

        return heads.Select(h => new Measurement<long>(h.Value, new KeyValuePair<string, object?>("tenant", h.Key)));
    }
}
