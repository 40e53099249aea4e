using HarnessServer.Sandbox;

namespace HarnessServer.Sessions;

/// <summary>
/// What restoring a checkpoint would do to a workspace as it is now, path by path: files and folders that exist now
/// but not in the checkpoint are <see cref="Removed"/>, those only in the checkpoint are <see cref="Restored"/>, files in
/// both whose content, mode or kind differ are <see cref="Changed"/> back. Sorted by path.
/// </summary>
internal sealed record RestorePreview(IReadOnlyList<string> Removed, IReadOnlyList<string> Restored, IReadOnlyList<string> Changed, int Unchanged)
{
    public bool ChangesNothing => Removed.Count == 0 && Restored.Count == 0 && Changed.Count == 0;

    /// <summary>
    /// Captures the workspace the way a checkpoint does (the same walk and hashes; its blobs are deduplicated and an
    /// unreferenced capture is collected like any pending one) and compares it with the checkpoint's manifest.
    /// </summary>
    public static RestorePreview Of(WorkspaceCheckpoints checkpoints, string tenant, Workspace workspace, string treeHash) =>
        Between(checkpoints.Load(tenant, checkpoints.Capture(tenant, workspace).Hash), checkpoints.Load(tenant, treeHash));

    /// <summary>What making <paramref name="now"/> into <paramref name="target"/> changes.</summary>
    public static RestorePreview Between(CheckpointManifest now, CheckpointManifest target)
    {
        var current = now.Entries.ToDictionary(e => e.Path, StringComparer.Ordinal);
        var wanted = target.Entries.ToDictionary(e => e.Path, StringComparer.Ordinal);
        var removed = current.Keys.Where(p => !wanted.ContainsKey(p)).Select(p => Shown(current[p])).Order(StringComparer.Ordinal).ToList();
        var restored = wanted.Keys.Where(p => !current.ContainsKey(p)).Select(p => Shown(wanted[p])).Order(StringComparer.Ordinal).ToList();
        var changed = new List<string>();
        var unchanged = 0;
        foreach (var (path, entry) in wanted)
        {
            if (!current.TryGetValue(path, out var present))
            {
                continue;
            }

            if (present.Kind != entry.Kind || (entry.Kind == "file" && (present.Hash != entry.Hash || present.Mode != entry.Mode)))
            {
                changed.Add(Shown(entry));
            }
            else
            {
                unchanged++;
            }
        }

        changed.Sort(StringComparer.Ordinal);
        return new RestorePreview(removed, restored, changed, unchanged);
    }

    private static string Shown(ManifestEntry entry) => entry.Kind == "directory" ? entry.Path + "/" : entry.Path;
}
