namespace HarnessServer.Policies;

/// <summary>What <see cref="PolicyDirectory.Load"/> found: every valid tenant, and every error with its file and location.</summary>
internal sealed record PolicyDirectoryContents(IReadOnlyDictionary<string, PolicySet> Tenants, IReadOnlyList<PolicyError> Errors);

/// <summary>
/// Reads <c>&lt;root&gt;/&lt;tenant&gt;/org.yaml</c>, <c>teams/&lt;team&gt;.yaml</c> and <c>users/&lt;user&gt;.yaml</c>
/// (<c>.yaml</c>, <c>.yml</c> or <c>.json</c>). A tenant with any invalid file is left out entirely: dropping one
/// bad file (say, a user's deny rules) and serving the rest would silently widen permissions.
/// </summary>
internal static class PolicyDirectory
{
    private static readonly string[] Extensions = [".yaml", ".yml", ".json"];

    public static PolicyDirectoryContents Load(string root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var tenants = new Dictionary<string, PolicySet>(StringComparer.Ordinal);
        var errors = new List<PolicyError>();
        if (!Directory.Exists(root))
        {
            errors.Add(new PolicyError(root, 1, 1, "the policies folder does not exist"));
            return new PolicyDirectoryContents(tenants, errors);
        }

        foreach (var folder in Directory.EnumerateDirectories(root).Order(StringComparer.Ordinal))
        {
            var tenant = Path.GetFileName(folder);
            if (tenant.StartsWith('.'))
            {
                continue;
            }

            var before = errors.Count;
            var files = Files(folder, errors);
            // A misspelt org file would otherwise be ignored without a word.
            foreach (var stray in files.Where(f => f.Name != "org"))
            {
                errors.Add(new PolicyError(stray.Path, 1, 1, "unexpected policy file: a tenant folder holds org.yaml, teams/<team>.yaml and users/<user>.yaml"));
            }

            var org = LoadLevel(files.Where(f => f.Name == "org"), PolicyLevel.Org, errors)
                .Select(d => d.Document).FirstOrDefault();
            var teams = LoadNamed(Path.Combine(folder, "teams"), PolicyLevel.Team, errors);
            var users = LoadNamed(Path.Combine(folder, "users"), PolicyLevel.User, errors);
            if (errors.Count == before)
            {
                tenants[tenant] = new PolicySet(tenant, org ?? PolicySet.Empty(tenant).Org, teams, users);
            }
        }

        return new PolicyDirectoryContents(tenants, errors);
    }

    private static Dictionary<string, PolicyDocument> LoadNamed(string folder, PolicyLevel level, List<PolicyError> errors)
    {
        var documents = new Dictionary<string, PolicyDocument>(StringComparer.Ordinal);
        if (Directory.Exists(folder))
        {
            foreach (var (name, document) in LoadLevel(Files(folder, errors), level, errors))
            {
                documents[name] = document;
            }
        }

        return documents;
    }

    private static List<(string Path, string Name)> Files(string folder, List<PolicyError> errors)
    {
        var files = Directory.EnumerateFiles(folder)
            .Where(f => Extensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal)
            .Select(f => (Path: f, Name: Path.GetFileNameWithoutExtension(f)))
            .ToList();
        foreach (var twin in files.GroupBy(f => f.Name, StringComparer.Ordinal).Where(g => g.Count() > 1))
        {
            errors.Add(new PolicyError(twin.Last().Path, 1, 1,
                $"'{twin.Key}' is defined by more than one file ({string.Join(", ", twin.Select(f => Path.GetFileName(f.Path)))}); keep one"));
        }

        return files;
    }

    private static List<(string Name, PolicyDocument Document)> LoadLevel(IEnumerable<(string Path, string Name)> files, PolicyLevel level, List<PolicyError> errors)
    {
        var documents = new List<(string, PolicyDocument)>();
        foreach (var (path, name) in files)
        {
            string text;
            try
            {
                text = File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                errors.Add(new PolicyError(path, 1, 1, $"cannot read the file: {e.Message}"));
                continue;
            }

            var result = PolicyParser.Parse(text, level, path);
            if (result.Document is null)
            {
                errors.AddRange(result.Errors);
            }
            else
            {
                documents.Add((name, result.Document));
            }
        }

        return documents;
    }
}
