using System.Text.Json;
using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace HarnessServer.Upstreams;

/// <summary>How the server reaches an upstream MCP server.</summary>
internal enum McpTransport
{
    /// <summary>Streamable HTTP at <see cref="McpUpstream.Url"/>, with the tenant's credential.</summary>
    Http,

    /// <summary><see cref="McpUpstream.Command"/> over stdin/stdout, inside a bubblewrap sandbox with no network.</summary>
    Stdio,
}

/// <summary>
/// An upstream MCP server a tenant's admins registered. Its tools are in the tenant's registry as
/// <c>mcp.&lt;server&gt;.&lt;tool&gt;</c> (<see cref="Tools.ToolKind.Mcp"/>), and every call of them passes the pipeline.
/// </summary>
internal sealed class McpUpstream : ITenantOwned
{
    public required string TenantId { get; set; }
    public required string Name { get; init; }
    public McpTransport Transport { get; init; }
    public string? Url { get; set; }
    public string[]? Command { get; set; }

    /// <summary>
    /// The <c>Authorization</c> header value sent upstream, as Data Protection ciphertext bound to the tenant and the
    /// server (the shared key ring, whose keys are encrypted with a key outside the database). Never a caller's token.
    /// </summary>
    public string? ProtectedCredential { get; set; }
    public int TimeoutSeconds { get; set; }
    public required string CreatedBy { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? RefreshedAt { get; set; }
}

/// <summary>
/// What an upstream now says about one of its tools, when that differs from the registered (approved) version: held
/// until an admin approves it, so an upstream cannot change what agents are told or what arguments pass (a rug pull).
/// </summary>
internal sealed class McpToolChange : ITenantOwned
{
    public required string TenantId { get; set; }

    /// <summary>The registry name, <c>mcp.&lt;server&gt;.&lt;tool&gt;</c>.</summary>
    public required string Tool { get; init; }
    public required string Server { get; init; }
    public required string UpstreamName { get; init; }
    public required string Description { get; set; }
    public required JsonDocument Schema { get; set; }

    /// <summary>True when the registry has no such tool yet (the upstream added it).</summary>
    public bool IsNew { get; set; }
    public DateTimeOffset DetectedAt { get; set; }
}

internal static class UpstreamTables
{
    extension(HarnessDbContext db)
    {
        public DbSet<McpUpstream> McpUpstreams => db.Set<McpUpstream>();
        public DbSet<McpToolChange> McpToolChanges => db.Set<McpToolChange>();
    }
}

internal sealed class McpUpstreamConfiguration : IEntityTypeConfiguration<McpUpstream>
{
    public void Configure(EntityTypeBuilder<McpUpstream> builder)
    {
        builder.ToTable("mcp_upstreams");
        builder.HasKey(u => new { u.TenantId, u.Name });
        builder.Property(u => u.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(u => u.Name).HasMaxLength(UpstreamLimits.ServerName);
        builder.Property(u => u.Transport).HasConversion<string>().HasMaxLength(10);
        builder.Property(u => u.Url).HasMaxLength(2048);
        builder.Property(u => u.ProtectedCredential).HasMaxLength(16384);
        builder.Property(u => u.CreatedBy).HasMaxLength(ColumnLimits.Identifier);
        builder.HasOne<Tenant>().WithMany().HasForeignKey(u => u.TenantId);
    }
}

internal sealed class McpToolChangeConfiguration : IEntityTypeConfiguration<McpToolChange>
{
    public void Configure(EntityTypeBuilder<McpToolChange> builder)
    {
        builder.ToTable("mcp_tool_changes");
        builder.HasKey(c => new { c.TenantId, c.Tool });
        builder.Property(c => c.TenantId).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.Tool).HasMaxLength(ColumnLimits.Identifier);
        builder.Property(c => c.Server).HasMaxLength(UpstreamLimits.ServerName);
        builder.Property(c => c.UpstreamName).HasMaxLength(UpstreamLimits.UpstreamToolName);
        builder.Property(c => c.Description).HasMaxLength(UpstreamLimits.MaxDescription);
        builder.HasOne<McpUpstream>().WithMany().HasForeignKey(c => new { c.TenantId, c.Server }).OnDelete(DeleteBehavior.Cascade);
    }
}

/// <summary>Caps on what an upstream (untrusted) may say about itself.</summary>
internal static class UpstreamLimits
{
    public const int ServerName = 40;
    public const int UpstreamToolName = 128;

    /// <summary>A description longer than this is cut (and marked) before an admin or an agent sees it.</summary>
    public const int MaxDescription = 2000;

    /// <summary>A schema larger than this (as JSON) is refused: that tool is not registered.</summary>
    public const int MaxSchemaBytes = 16 * 1024;

    public const int MaxTools = 128;
}
