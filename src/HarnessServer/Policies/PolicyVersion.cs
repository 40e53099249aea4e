using HarnessServer.Data;

namespace HarnessServer.Policies;

/// <summary>
/// One stored version of one policy level of a tenant. Files are imported as versions whenever their content changes
/// and admin edits are versions too; the newest version of a level is in force and the older ones are its history.
/// </summary>
internal sealed class PolicyVersion : ITenantOwned
{
    public required string TenantId { get; set; }

    /// <summary><c>org</c>, <c>team:&lt;name&gt;</c> or <c>user:&lt;id&gt;</c>.</summary>
    public required string LevelKey { get; init; }

    public int Version { get; init; }
    public required string Content { get; init; }

    /// <summary>SHA-256 of <see cref="Content"/>, to import a file only when it changed.</summary>
    public required string ContentHash { get; init; }

    /// <summary><c>file</c> (imported from Harness:PoliciesPath) or <c>api</c> (an admin edit).</summary>
    public required string Origin { get; init; }

    public required string ChangedBy { get; init; }
    public required string ChangedByName { get; init; }
    public DateTimeOffset ChangedAt { get; init; }
}
