using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Memory;

/// <summary>
/// The server with an org policy, imported from a policy folder like any tenant's, for each tenant the memory tests
/// use: memory tools are allowed, except that <c>team:locked</c> is denied and <c>team:review</c> asks. Every memory
/// call is decided by the real policy engine in the pipeline, as in production. A tenant with no folder here has no
/// rules, so the org default denies.
/// </summary>
public class MemoryApplication : HarnessApplication
{
    /// <summary>The tenants of the memory tests that get <see cref="OrgPolicy"/>.</summary>
    public static readonly string[] Tenants =
    [
        "audit-acme", "delete-acme", "expiry-acme", "hnsw-acme", "hnsw-globex", "iso-acme", "iso-globex", "limits-acme",
        "list-acme", "ns-acme", "policy-acme", "purge-acme", "rank-acme", "reembed-acme", "reembed-held-acme", "rls-acme", "session-acme",
        "team-acme", "user-acme",
    ];

    public const string OrgPolicy = """
        default: deny
        rules:
          - tool: "memory.save"
            effect: deny
            args: { namespace: "team:locked" }
            reason: "team memory is read-only"
          - tool: "memory.search"
            effect: deny
            args: { namespace: "team:locked" }
            reason: "team memory is read-only"
          - tool: "memory.save"
            effect: ask
            args: { namespace: "team:review" }
            reason: "a lead reviews shared notes"
          - tool: "memory.search"
            effect: ask
            args: { namespace: "team:review" }
            reason: "a lead reviews shared notes"
          - tool: "memory.save"
            effect: allow
          - tool: "memory.search"
            effect: allow
        """;

    protected override void Configure(IDictionary<string, string?> settings)
    {
        settings["Harness:Memory:ReembedInterval"] = "00:00:00.500";
        foreach (var tenant in Tenants)
        {
            var folder = Path.Combine(settings["Harness:PoliciesPath"]!, tenant);
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, "org.yaml"), OrgPolicy);
        }
    }
}

/// <summary>Every namespace searched through HNSW with iterative scan, never exactly.</summary>
public sealed class HnswOnlyMemoryApplication : MemoryApplication
{
    protected override void Configure(IDictionary<string, string?> settings)
    {
        base.Configure(settings);
        settings["Harness:Memory:ExactSearchMaxRows"] = "0";
    }
}

/// <summary>Re-embedding at start and then only when a test runs a pass, two items per batch.</summary>
public sealed class HeldReembeddingMemoryApplication : MemoryApplication
{
    protected override void Configure(IDictionary<string, string?> settings)
    {
        base.Configure(settings);
        settings["Harness:Memory:ReembedInterval"] = "01:00:00";
        settings["Harness:Memory:ReembedBatchSize"] = "2";
    }
}
