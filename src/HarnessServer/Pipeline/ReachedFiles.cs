using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Policies;
using HarnessServer.Sandbox;

namespace HarnessServer.Pipeline;

/// <summary>
/// <c>fs.list</c> and <c>fs.search</c> reach files beneath their path that a rule on a sub-path may govern
/// (<c>deny fs.* secrets/**</c> against a search of <c>.</c>). Their results are filtered file by file: an entry is
/// kept only when an <c>fs.read</c> of its path would be allowed, and the result says how many were withheld and why.
/// </summary>
internal static class ReachedFiles
{
    private const string ReadTool = "fs.read";

    public static JsonNode List(DirectoryListing listing, string listedPath, PolicyResolver resolver)
    {
        var withheld = new List<(string Path, PolicyDecision Decision)>();
        var kept = new List<DirectoryEntry>(listing.Entries.Count);
        foreach (var entry in listing.Entries)
        {
            var path = listedPath.Length == 0 ? entry.Name : $"{listedPath}/{entry.Name}";
            if (Readable(resolver, path, withheld))
            {
                kept.Add(entry);
            }
        }

        return Describe(JsonSerializer.SerializeToNode(listing with { Entries = kept }, Sessions.AuditViews.Json)!, withheld);
    }

    public static JsonNode Search(SearchResults results, PolicyResolver resolver)
    {
        var withheld = new List<(string Path, PolicyDecision Decision)>();
        var decided = new Dictionary<string, bool>(StringComparer.Ordinal);
        var kept = new List<SearchMatch>(results.Matches.Count);
        foreach (var match in results.Matches)
        {
            if (!decided.TryGetValue(match.Path, out var readable))
            {
                decided[match.Path] = readable = Readable(resolver, match.Path, withheld);
            }

            if (readable)
            {
                kept.Add(match);
            }
        }

        return Describe(JsonSerializer.SerializeToNode(results with { Matches = kept }, Sessions.AuditViews.Json)!, withheld);
    }

    private static bool Readable(PolicyResolver resolver, string path, List<(string, PolicyDecision)> withheld)
    {
        var decision = resolver.Decide(ReadTool, new Dictionary<string, string?>(StringComparer.Ordinal) { ["path"] = path }, Workspace.MountPoint);
        if (decision.Effect == PolicyEffect.Allow)
        {
            return true;
        }

        withheld.Add((path, decision));
        return false;
    }

    private static JsonNode Describe(JsonNode result, List<(string Path, PolicyDecision Decision)> withheld)
    {
        if (withheld.Count > 0)
        {
            var (path, decision) = withheld[0];
            result["withheld"] = withheld.Count;
            result["withheldReason"] =
                $"{withheld.Count} file(s) withheld: the result is filtered by the decision an fs.read of each file would get; "
                + $"the first, '{path}', would be {decision.Effect.ToString().ToLowerInvariant()}: {decision.Explanation}";
        }

        return result;
    }
}
