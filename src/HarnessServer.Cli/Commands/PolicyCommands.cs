using System.CommandLine;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using HarnessServer.Client;
using HarnessServer.Policies;

namespace HarnessServer.Cli.Commands;

/// <summary>One level of a policy folder against the server: what applying the folder would do to it.</summary>
internal sealed record PlannedLevel(string Level, string File, string Change, int? StoredVersion, string ContentHash, string? Diff);

/// <summary>A plan as <c>policies plan --out</c> writes it and <c>policies apply --plan</c> reads it.</summary>
internal sealed record PolicyPlan(string Server, IReadOnlyList<PlannedLevel> Levels);

internal static class PolicyCommands
{
    private static readonly string[] Extensions = [".yaml", ".yml", ".json"];

    public static Command Policies(CliEnvironment environment)
    {
        var folder = new Argument<DirectoryInfo>("folder") { Description = "A tenant's policy folder: org.yaml, teams/<team>.yaml, users/<user>.yaml." };
        var output = new Option<FileInfo?>("--out") { Description = "Also write the plan here, for apply --plan." };
        var plan = new Command("plan", "Diff a policy folder against the stored versions, level by level (admins).") { folder, output };
        plan.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var computed = await PlanAsync(c.Client, HarnessCli.ServerOf(parsed, environment), parsed.GetValue(folder)!, ct);
            if (parsed.GetValue(output) is { } file)
            {
                await File.WriteAllTextAsync(file.FullName, JsonSerializer.Serialize(computed, CliJson.Options), ct);
            }

            c.Print(computed, o => Show(o, computed));
            return ExitCodes.Ok;
        }));

        var applyFolder = new Argument<DirectoryInfo>("folder") { Description = "The policy folder to apply." };
        var planFile = new Option<FileInfo?>("--plan") { Description = "Apply exactly this plan: a level stored again since it was made is not overwritten (exit 2)." };
        var apply = new Command("apply", "Store the folder's changed levels, each with If-Match on the version the plan saw (admins).") { applyFolder, planFile };
        apply.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var server = HarnessCli.ServerOf(parsed, environment);
            var directory = parsed.GetValue(applyFolder)!;
            var current = await PlanAsync(c.Client, server, directory, ct);
            var planned = current;
            var byLevel = current.Levels.ToDictionary(l => l.Level);
            if (parsed.GetValue(planFile) is { } file)
            {
                planned = ReadPlan(file);
                if (planned.Server != server.ToString())
                {
                    throw new CliException($"The plan was made against {planned.Server}, not {server}.");
                }

                foreach (var level in planned.Levels.Where(l => l.Change != "unchanged"))
                {
                    if (!byLevel.TryGetValue(level.Level, out var now) || now.ContentHash != level.ContentHash)
                    {
                        throw new CliException($"{level.File} changed since the plan was made; run harness policies plan again.");
                    }
                }
            }

            var applied = new List<PolicyVersionView>();
            foreach (var level in planned.Levels.Where(l => l.Change != "unchanged"))
            {
                // The file as the folder has it now (its hash matched the plan's), never a path the plan file names.
                var content = await File.ReadAllTextAsync(Path.Combine(directory.FullName, byLevel[level.Level].File), ct);
                try
                {
                    applied.Add(await c.Client.PutPolicyFileAsync(Parse(level.Level), content, level.StoredVersion, ct));
                }
                catch (HarnessApiException e) when (e.StatusCode == (int)HttpStatusCode.PreconditionFailed)
                {
                    c.Error.WriteLine($"error: {level.Level} was stored again since the plan (which saw version {level.StoredVersion}); nothing more was applied. " +
                                      $"Applied before it: {(applied.Count == 0 ? "none" : string.Join(", ", applied.Select(a => $"{a.Level} v{a.Version}")))}. Run harness policies plan again.");
                    return ExitCodes.Changed;
                }
            }

            c.Print(applied, o =>
            {
                foreach (var version in applied)
                {
                    o.WriteLine($"{version.Level}: stored version {version.Version} ({version.ContentHash[..12]})");
                }

                o.WriteLine(applied.Count == 0 ? "Nothing to apply: every level matches the folder." : $"Applied {applied.Count} level(s).");
            });
            return ExitCodes.Ok;
        }));

        return new Command("policies", "Policies as code: plan and apply a folder of policy files.") { plan, apply };
    }

    private static async Task<PolicyPlan> PlanAsync(HarnessClient client, Uri server, DirectoryInfo folder, CancellationToken ct)
    {
        if (!folder.Exists)
        {
            throw new CliException($"{folder.FullName} is not a folder.");
        }

        var levels = new List<PlannedLevel>();
        foreach (var (level, path) in FilesOf(folder.FullName))
        {
            var content = await File.ReadAllTextAsync(path, ct);
            var stored = await client.GetPolicyFileAsync(level, ct);
            var relative = Path.GetRelativePath(folder.FullName, path);
            var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(content)));
            var same = stored is not null && stored.Content.ReplaceLineEndings("\n") == content.ReplaceLineEndings("\n");
            levels.Add(new PlannedLevel(level.ToString(), relative, stored is null ? "create" : same ? "unchanged" : "change", stored?.Version, hash,
                same ? null : LineDiff.Unified(stored?.Content ?? "", content)));
        }

        return new PolicyPlan(server.ToString(), levels);
    }

    private static void Show(TextWriter output, PolicyPlan plan)
    {
        foreach (var level in plan.Levels)
        {
            var stored = level.StoredVersion is { } v ? $"stored v{v}" : "not stored";
            output.WriteLine($"{level.Level,-24} {level.Change,-9} ({stored})  {level.File}");
            if (level.Diff is { Length: > 0 } diff)
            {
                foreach (var line in diff.TrimEnd('\n').Split('\n'))
                {
                    output.WriteLine($"    {line}");
                }
            }
        }

        output.WriteLine($"Plan: {plan.Levels.Count(l => l.Change == "create")} to create, {plan.Levels.Count(l => l.Change == "change")} to change, " +
                         $"{plan.Levels.Count(l => l.Change == "unchanged")} unchanged. Levels stored but not in the folder are left alone.");
    }

    // The folder layout the server imports from Harness:PoliciesPath (Policies/PolicyFileImporter.cs).
    private static IEnumerable<(PolicyLevel Level, string Path)> FilesOf(string folder)
    {
        foreach (var file in PolicyFiles(folder).Where(f => Path.GetFileNameWithoutExtension(f) == "org").Take(1))
        {
            yield return (PolicyLevel.Org, file);
        }

        foreach (var file in PolicyFiles(Path.Combine(folder, "teams")))
        {
            yield return (PolicyLevel.Team(Path.GetFileNameWithoutExtension(file)), file);
        }

        foreach (var file in PolicyFiles(Path.Combine(folder, "users")))
        {
            yield return (PolicyLevel.User(Path.GetFileNameWithoutExtension(file)), file);
        }
    }

    private static IEnumerable<string> PolicyFiles(string folder) =>
        Directory.Exists(folder)
            ? Directory.EnumerateFiles(folder).Where(f => Extensions.Contains(Path.GetExtension(f))).Order(StringComparer.Ordinal)
            : [];

    private static PolicyLevel Parse(string level) => level.Split(':', 2) switch
    {
        ["org"] => PolicyLevel.Org,
        ["team", var name] => PolicyLevel.Team(name),
        ["user", var id] => PolicyLevel.User(id),
        _ => throw new CliException($"'{level}' is not a policy level (org, team:NAME, user:ID)."),
    };

    private static PolicyPlan ReadPlan(FileInfo file)
    {
        try
        {
            return JsonSerializer.Deserialize<PolicyPlan>(File.ReadAllText(file.FullName), CliJson.Options)
                   ?? throw new CliException($"{file.Name} is an empty plan.");
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            throw new CliException($"{file.Name} is not a plan written by harness policies plan --out: {e.Message}");
        }
    }
}
