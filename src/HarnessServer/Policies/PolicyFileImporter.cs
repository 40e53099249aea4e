using System.Security.Cryptography;
using System.Text;
using HarnessServer.Audit;
using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Policies;

/// <summary>
/// At start, imports the files of <c>Harness:PoliciesPath</c> (<c>&lt;tenant&gt;/org.yaml</c>,
/// <c>teams/&lt;team&gt;.yaml</c>, <c>users/&lt;user&gt;.yaml</c>) as new versions of their levels whenever a file's
/// content differs from what was last imported from it. A file that does not parse is not imported (the level keeps
/// its current version) and the error is logged with its line and column.
/// </summary>
internal sealed class PolicyFileImporter(
    TenantDbContextFactory contexts,
    PolicyService policies,
    AuditChain audit,
    IOptions<PolicyOptions> options,
    IHostEnvironment environment,
    DatabaseSources sources,
    TimeProvider time,
    ILogger<PolicyFileImporter> logger) : IHostedService
{
    private static readonly string[] Extensions = [".yaml", ".yml", ".json"];
    private static readonly AuditActor System = new("harness", "HarnessServer policy import");

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var root = Path.GetFullPath(options.Value.PoliciesPath, environment.ContentRootPath);
        if (!Directory.Exists(root))
        {
            logger.LogInformation("No policies folder at {Root}; nothing to import", root);
            return;
        }

        foreach (var folder in Directory.EnumerateDirectories(root).Order(StringComparer.Ordinal))
        {
            var tenant = Path.GetFileName(folder);
            await EnsureTenantAsync(tenant, cancellationToken);
            foreach (var (level, path) in FilesOf(folder))
            {
                await ImportAsync(tenant, level, path, cancellationToken);
            }
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private async Task ImportAsync(string tenant, PolicyLevelKey level, string path, CancellationToken cancellationToken)
    {
        var content = await File.ReadAllTextAsync(path, cancellationToken);
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(content)));
        await using var db = contexts.Create(tenant);
        var key = level.ToString();
        var lastImported = await db.PolicyVersions.AsNoTracking()
            .Where(p => p.LevelKey == key && p.Origin == "file")
            .OrderByDescending(p => p.Version)
            .Select(p => p.ContentHash)
            .FirstOrDefaultAsync(cancellationToken);
        if (lastImported == hash)
        {
            return;
        }

        try
        {
            var stored = await policies.StoreAsync(audit, tenant, level, content, "file", System, null, time, cancellationToken);
            logger.LogInformation("Imported {Path} as {Tenant} {Level} v{Version}", path, tenant, key, stored.Version);
        }
        catch (PolicyValidationException e)
        {
            foreach (var error in e.Errors)
            {
                logger.LogError("Policy file {Path} not imported: line {Line}, column {Column}: {Message}", path, error.Line, error.Column, error.Message);
            }
        }
    }

    private async Task EnsureTenantAsync(string tenant, CancellationToken cancellationToken)
    {
        await using var command = sources.Application.CreateCommand(Data.TenantConfiguration.InsertIfNewSql);
        command.Parameters.Add(new NpgsqlParameter { Value = tenant });
        command.Parameters.Add(new NpgsqlParameter { Value = time.GetUtcNow() });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static IEnumerable<(PolicyLevelKey Level, string Path)> FilesOf(string folder)
    {
        foreach (var file in PolicyFiles(folder).Where(f => Path.GetFileNameWithoutExtension(f) == "org").Take(1))
        {
            yield return (PolicyLevelKey.Org, file);
        }

        foreach (var file in PolicyFiles(Path.Combine(folder, "teams")))
        {
            yield return (PolicyLevelKey.Team(Path.GetFileNameWithoutExtension(file)), file);
        }

        foreach (var file in PolicyFiles(Path.Combine(folder, "users")))
        {
            yield return (PolicyLevelKey.User(Path.GetFileNameWithoutExtension(file)), file);
        }
    }

    private static IEnumerable<string> PolicyFiles(string folder) =>
        Directory.Exists(folder)
            ? Directory.EnumerateFiles(folder).Where(f => Extensions.Contains(Path.GetExtension(f))).Order(StringComparer.Ordinal)
            : [];
}

/// <summary>The <c>Harness</c> keys of the policy feature.</summary>
internal sealed class PolicyOptions
{
    public string PoliciesPath { get; set; } = "policies";
}
