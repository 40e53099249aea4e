using ArchUnitNET.Domain;
using ArchUnitNET.Loader;

namespace HarnessServer.Tests.Architecture;

/// <summary>
/// The folders of <c>src/HarnessServer</c> depend one way: each may use only the folders below it in
/// <see cref="Layers"/>, so no two folders depend on each other and no cycle can form. Dependencies are read from the
/// compiled server (every type reference in signatures, fields and method bodies, via ArchUnitNET), not from
/// <c>using</c> lines, so a fully qualified name cannot slip past.
/// </summary>
public sealed class FolderDependencyTests
{
    /// <summary>Top to bottom. A folder may depend on any folder listed after it, never on one before it.</summary>
    public static readonly string[] Layers =
    [
        "Migrations",    // EF Core migrations: the model snapshot only
        "Mcp",           // /mcp: the MCP server over the pipeline (tools/list, tools/call, the protected resource)
        "WebConsole",    // the web console: its pages, cookie + OIDC sign-in, live updates (beside Api, above all else)
        "Api",           // every HTTP route and its request/response records
        "Agents",        // Semantic Kernel turns; their function filter hands every call to the pipeline
        "Pipeline",      // the one ordered list of steps a tool call passes, the approved-call executor, recovery
        "Approvals",     // approvals of held calls and their decisions
        "Webhooks",      // tenants' outbound webhooks: the outbox and its dispatcher
        "Memory",        // namespaced memory on pgvector
        "Sessions",      // sessions, their stored tool calls and events, workspace checkpoints
        "Upstreams",     // upstream MCP servers: registration, held changes, the client the execute step calls
        "Sandbox",       // workspaces and bubblewrap
        "Tools",         // the tool registry and definitions, http.fetch
        "Policies",      // policy files and versions, the resolution engine, shell-line and path matching
        "Audit",         // the hash chain and the unit of work its appends commit in
        "Identity",      // tokens, the caller, provisioning of users and teams
        "Data",          // the DbContext, connections, the change feed
        "Tenancy",       // the tenant a scope is bound to
        "Http",          // problem details, limits, health
        "Observability", // the ActivitySource and Meter
        "Errors",        // the domain's refusals (HarnessError), which Http maps to problem details
    ];

    private static readonly Lazy<IReadOnlyList<(string From, string To, string Detail)>> Edges = new(ReadEdges);

    [Fact]
    public void Every_folder_depends_only_on_folders_below_it()
    {
        var rank = Layers.Select((name, index) => (name, index)).ToDictionary(x => x.name, x => x.index);
        var violations = Edges.Value
            .Where(e => rank[e.From] >= rank[e.To])
            .GroupBy(e => $"{e.From} -> {e.To}", e => e.Detail)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Distinct().Order(StringComparer.Ordinal).Take(5))}")
            .ToList();

        Assert.True(violations.Count == 0,
            "These dependencies point up the layers (a folder may use only the folders below it):\n" + string.Join('\n', violations));
    }

    [Fact]
    public void Every_folder_of_the_server_has_a_place_in_the_layers()
    {
        var folders = Edges.Value.SelectMany(e => new[] { e.From, e.To }).Distinct();
        Assert.Empty(folders.Except(Layers));
    }

    [Fact]
    public void No_two_folders_depend_on_each_other_and_there_is_no_cycle()
    {
        var graph = Edges.Value.GroupBy(e => e.From).ToDictionary(g => g.Key, g => g.Select(e => e.To).ToHashSet());
        var cycle = FindCycle(graph);
        Assert.True(cycle is null, $"The folders form a cycle: {string.Join(" -> ", cycle ?? [])}");
    }

    /// <summary>The rule catches each of the two-way pairs the folders had before this order was set (issue 14).</summary>
    [Theory]
    [InlineData("Pipeline", "Tools")]
    [InlineData("Pipeline", "Sessions")]
    [InlineData("Pipeline", "Approvals")]
    [InlineData("Agents", "Sessions")]
    [InlineData("Approvals", "Sessions")]
    [InlineData("Policies", "Sandbox")]
    [InlineData("Audit", "Data")]
    [InlineData("Http", "Identity")]
    [InlineData("Data", "Agents")]
    [InlineData("Data", "Approvals")]
    [InlineData("Data", "Memory")]
    [InlineData("Data", "Pipeline")]
    [InlineData("Data", "Policies")]
    [InlineData("Data", "Sessions")]
    [InlineData("Data", "Tools")]
    public void A_former_two_way_pair_can_depend_one_way_only(string a, string b)
    {
        var rank = Layers.Select((name, index) => (name, index)).ToDictionary(x => x.name, x => x.index);
        Assert.NotEqual(rank[a] < rank[b], rank[b] < rank[a]);
    }

    private static IReadOnlyList<(string From, string To, string Detail)> ReadEdges()
    {
        var architecture = new ArchLoader().LoadAssemblies(typeof(Program).Assembly).Build();
        var edges = new List<(string, string, string)>();
        foreach (var type in architecture.Types)
        {
            if (Folder(type) is not { } from)
            {
                continue;
            }

            foreach (var dependency in type.Dependencies)
            {
                // A target ArchUnitNET cannot resolve lies outside the server's assembly (a package's type), so no folder.
                if (dependency?.Target is { } target && Folder(target) is { } to && to != from)
                {
                    edges.Add((from, to, $"{type.Name} -> {dependency.Target.Name}"));
                }
            }
        }

        return edges;
    }

    // HarnessServer.<Folder>[.more] -> Folder; Program and generated types outside the folders are not layered.
    private static string? Folder(IType type)
    {
        const string Root = "HarnessServer.";
        var ns = type.Namespace?.FullName ?? "";
        if (!ns.StartsWith(Root, StringComparison.Ordinal))
        {
            return null;
        }

        var rest = ns[Root.Length..];
        var dot = rest.IndexOf('.', StringComparison.Ordinal);
        return dot < 0 ? rest : rest[..dot];
    }

    private static List<string>? FindCycle(Dictionary<string, HashSet<string>> graph)
    {
        var state = new Dictionary<string, int>(); // 1 = on the path, 2 = done
        var path = new List<string>();

        List<string>? Visit(string node)
        {
            state[node] = 1;
            path.Add(node);
            foreach (var next in graph.GetValueOrDefault(node) ?? [])
            {
                if (state.GetValueOrDefault(next) == 1)
                {
                    return [.. path[path.IndexOf(next)..], next];
                }

                if (state.GetValueOrDefault(next) == 0 && Visit(next) is { } found)
                {
                    return found;
                }
            }

            path.RemoveAt(path.Count - 1);
            state[node] = 2;
            return null;
        }

        foreach (var node in graph.Keys)
        {
            if (state.GetValueOrDefault(node) == 0 && Visit(node) is { } cycle)
            {
                return cycle;
            }
        }

        return null;
    }
}
