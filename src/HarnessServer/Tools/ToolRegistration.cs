using System.Text.Json;
using HarnessServer.Data;

namespace HarnessServer.Tools;

/// <summary>
/// One version of an admin-defined tool, or of an override of a built-in (its enabled flag and description).
/// Rows are never updated: a change is a new version, and the newest version of a name is in force.
/// </summary>
internal sealed class ToolRegistration : ITenantOwned
{
    public required string TenantId { get; set; }
    public required string Name { get; init; }
    /// <summary>Assigned when the row is stored: one more than the newest version of the name.</summary>
    public int Version { get; set; }
    public required string Description { get; init; }
    public required JsonDocument Schema { get; init; }
    public ToolKind Kind { get; init; }
    public string[]? Argv { get; init; }
    public bool Enabled { get; init; }

    /// <summary>A deletion is recorded as a version too, so history is kept.</summary>
    public bool Deleted { get; init; }

    public required string ChangedBy { get; init; }
    public DateTimeOffset ChangedAt { get; init; }
}
