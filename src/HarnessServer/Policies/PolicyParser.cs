using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace HarnessServer.Policies;

/// <summary>
/// Reads one policy file (YAML, or JSON, which is read as YAML) into a <see cref="PolicyDocument"/>, or into every
/// error found with its line and column. Never throws on bad input: an admin's upload and a file on disk get the
/// same precise answer.
/// </summary>
internal static class PolicyParser
{
    public const int MaxLength = 1 << 20;

    private static readonly string[] DocumentKeys = ["default", "rules"];
    private static readonly string[] RuleKeys = ["tool", "effect", "args", "locked", "reason", "approvers", "quorum", "self", "expires"];
    private static readonly string[] RoutingKeys = ["approvers", "quorum", "self", "expires"];

    public static PolicyParseResult Parse(string text, PolicyLevel level, string source)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(source);
        var reader = new DocumentReader(source, level);
        if (text.Length > MaxLength)
        {
            reader.Error(1, 1, $"the policy is {text.Length} characters long; the limit is {MaxLength}");
            return reader.Result(null);
        }

        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            reader.Error(e.Start, $"not valid YAML or JSON: {WithoutLocation(e.Message)}");
            return reader.Result(null);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or OverflowException)
        {
            // YamlDotNet reports a few malformed inputs with general exceptions rather than YamlException.
            reader.Error(1, 1, $"not valid YAML or JSON: {e.Message}");
            return reader.Result(null);
        }

        if (stream.Documents.Count > 1)
        {
            reader.Error(stream.Documents[1].RootNode.Start, "a policy file holds one document; remove the second '---' document");
            return reader.Result(null);
        }

        var root = stream.Documents.Count == 0 ? null : stream.Documents[0].RootNode;
        var document = root is null || IsNull(root) ? PolicyDocument.Empty(level, source) : reader.Document(root);
        return reader.Result(document);
    }

    /// <summary>
    /// Where each entry of a valid document's <c>rules</c> starts (1-based line and column), in order; empty when the
    /// text has no rules list. For messages about a rule that parsed (a valid document keeps every rule, in order).
    /// </summary>
    public static IReadOnlyList<(int Line, int Column)> RuleStarts(string text)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (Exception e) when (e is YamlException or ArgumentException or InvalidOperationException or FormatException or OverflowException)
        {
            return [];
        }

        return stream.Documents is [{ RootNode: YamlMappingNode root }]
            && root.Children.FirstOrDefault(c => c.Key is YamlScalarNode { Value: "rules" }).Value is YamlSequenceNode rules
            ? [.. rules.Children.Select(r => ((int)Math.Max(1, r.Start.Line), (int)Math.Max(1, r.Start.Column)))]
            : [];
    }

    // YamlException messages repeat the location we already report: "(Line: 1, Col: 2, Idx: 1) - (...): text".
    private static string WithoutLocation(string message)
    {
        var at = message.IndexOf("): ", StringComparison.Ordinal);
        return message.StartsWith("(Line", StringComparison.Ordinal) && at >= 0 ? message[(at + 3)..] : message;
    }

    private static bool IsNull(YamlNode node) =>
        node is YamlScalarNode { Style: ScalarStyle.Plain or ScalarStyle.Any, Value: null or "" or "~" or "null" or "Null" or "NULL" };

    private sealed class DocumentReader(string source, PolicyLevel level)
    {
        private readonly List<PolicyError> _errors = [];

        public PolicyParseResult Result(PolicyDocument? document) =>
            _errors.Count == 0 && document is not null ? new(document, []) : new(null, _errors);

        public void Error(int line, int column, string message) => _errors.Add(new PolicyError(source, line, column, message));

        public void Error(Mark mark, string message) => Error((int)Math.Max(1, mark.Line), (int)Math.Max(1, mark.Column), message);

        public PolicyDocument? Document(YamlNode root)
        {
            if (root is not YamlMappingNode map)
            {
                Error(root.Start, $"a policy is a mapping with the keys {string.Join(", ", DocumentKeys)}, not {Describe(root)}");
                return null;
            }

            PolicyEffect? fallback = null;
            var rules = new List<PolicyRule>();
            foreach (var (key, value) in Entries(map, "the policy", DocumentKeys))
            {
                if (key == "default")
                {
                    fallback = Default(value);
                }
                else
                {
                    Rules(value, rules);
                }
            }

            return new PolicyDocument(level, source, fallback, rules);
        }

        private PolicyEffect? Default(YamlNode value)
        {
            if (level != PolicyLevel.Org)
            {
                Error(value.Start, $"'default' is only allowed in the org policy, not at {Name(level)} level: the org default applies when no rule matches");
                return null;
            }

            var text = Scalar(value, "default");
            switch (text)
            {
                case null:
                    return null;
                case "deny":
                    return PolicyEffect.Deny;
                case "ask":
                    return PolicyEffect.Ask;
                case "allow":
                    Error(value.Start, "default must be deny or ask: a default of allow would allow every tool no rule mentions");
                    return null;
                default:
                    Error(value.Start, $"unknown default '{text}': use deny or ask");
                    return null;
            }
        }

        private void Rules(YamlNode value, List<PolicyRule> rules)
        {
            if (IsNull(value))
            {
                return;
            }

            if (value is not YamlSequenceNode sequence)
            {
                Error(value.Start, $"'rules' is a list of rules, not {Describe(value)}");
                return;
            }

            for (var i = 0; i < sequence.Children.Count; i++)
            {
                var rule = Rule(sequence.Children[i], $"rules[{i}]");
                if (rule is not null)
                {
                    rules.Add(rule);
                }
            }
        }

        private PolicyRule? Rule(YamlNode node, string where)
        {
            if (node is not YamlMappingNode map)
            {
                Error(node.Start, $"{where}: a rule is a mapping with the keys {string.Join(", ", RuleKeys)}, not {Describe(node)}");
                return null;
            }

            var before = _errors.Count;
            string? tool = null;
            PolicyEffect? effect = null;
            var locked = false;
            string? reason = null;
            IReadOnlyDictionary<string, IReadOnlyList<string>> args = PolicyRule.NoArgs;
            IReadOnlyList<string> approvers = [];
            var quorum = 1;
            var self = false;
            TimeSpan? expires = null;
            var routing = new List<(string Key, YamlNode Value)>();
            foreach (var (key, value) in Entries(map, where, RuleKeys))
            {
                if (Array.IndexOf(RoutingKeys, key) >= 0)
                {
                    routing.Add((key, value));
                }

                switch (key)
                {
                    case "approvers":
                        approvers = Approvers(value, where);
                        break;
                    case "quorum":
                        quorum = Quorum(value, where);
                        break;
                    case "self":
                        self = Self(value, where);
                        break;
                    case "expires":
                        expires = Expires(value, where);
                        break;
                    case "tool":
                        tool = Scalar(value, $"{where}.tool");
                        if (tool is not null)
                        {
                            Glob(value, tool, $"{where}.tool");
                        }

                        break;
                    case "effect":
                        effect = Effect(value, where);
                        break;
                    case "args":
                        args = Args(value, where);
                        break;
                    case "locked":
                        locked = Locked(value, where);
                        break;
                    case "reason":
                        reason = IsNull(value) ? null : Scalar(value, $"{where}.reason");
                        break;
                }
            }

            var missing = new[] { tool is null && !HasKey(map, "tool") ? "tool" : null, effect is null && !HasKey(map, "effect") ? "effect" : null }
                .Where(k => k is not null).ToArray();
            if (missing.Length > 0)
            {
                Error(map.Start, $"{where}: missing {string.Join(" and ", missing)}: every rule needs tool and effect");
            }

            // Routing says who approves what an ask holds; on allow or deny it would be silently meaningless.
            if (effect is { } e && e != PolicyEffect.Ask)
            {
                foreach (var (key, value) in routing)
                {
                    Error(value.Start, $"{where}.{key}: only an ask rule says who approves; this rule's effect is {e.ToString().ToLowerInvariant()}");
                }
            }

            var approval = routing.Count == 0 ? null : new ApprovalRouting(approvers, quorum, self, expires);
            return _errors.Count == before && tool is not null && effect is not null
                ? new PolicyRule(tool, effect.Value, args, locked, string.IsNullOrEmpty(reason) ? null : reason, approval)
                : null;
        }

        private string[] Approvers(YamlNode value, string where)
        {
            var at = $"{where}.approvers";
            if (value is not YamlSequenceNode list)
            {
                Error(value.Start, $"{at}: a list of 'team:<name>' or 'role:<name>' entries, not {Describe(value)}");
                return [];
            }

            if (list.Children.Count == 0)
            {
                Error(list.Start, $"{at}: an empty list names no one who could approve: name at least one 'team:<name>' or 'role:<name>', or leave the key out for the default (approvers of the requester's teams, and admins)");
            }

            var entries = new List<string>();
            for (var i = 0; i < list.Children.Count; i++)
            {
                var node = list.Children[i];
                var text = node is YamlScalarNode && !IsNull(node) ? Scalar(node, $"{at}[{i}]") : null;
                if (text is null)
                {
                    if (node is not YamlScalarNode || IsNull(node))
                    {
                        Error(node.Start, $"{at}[{i}]: an entry is 'team:<name>' or 'role:<name>', not {Describe(node)}");
                    }

                    continue;
                }

                var colon = text.IndexOf(':', StringComparison.Ordinal);
                var kind = colon < 0 ? "" : text[..colon];
                var name = colon < 0 ? "" : text[(colon + 1)..];
                if (kind is not ("team" or "role") || name.Length == 0 || name.Length > Data.ColumnLimits.Identifier || name.Trim().Length != name.Length)
                {
                    Error(node.Start, $"{at}[{i}]: '{text}' is not 'team:<name>' or 'role:<name>' (a name of 1 to {Data.ColumnLimits.Identifier} characters, no surrounding spaces)");
                    continue;
                }

                if (!entries.Contains(text, StringComparer.Ordinal))
                {
                    entries.Add(text);
                }
            }

            return [.. entries];
        }

        private int Quorum(YamlNode value, string where)
        {
            var text = Scalar(value, $"{where}.quorum");
            if (text is null)
            {
                return 1;
            }

            if (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var quorum)
                || quorum < 1 || quorum > ApprovalRouting.MaxQuorum)
            {
                Error(value.Start, $"{where}.quorum: '{text}' is not a number of distinct approvers from 1 to {ApprovalRouting.MaxQuorum}");
                return 1;
            }

            return quorum;
        }

        private bool Self(YamlNode value, string where)
        {
            var text = Scalar(value, $"{where}.self");
            switch (text)
            {
                case null:
                    return false;
                case "allow":
                    return true;
                case "deny":
                    return false;
                default:
                    Error(value.Start, $"{where}.self: '{text}' is not allow or deny (allow lets the requester approve their own call; deny, the default, needs another person)");
                    return false;
            }
        }

        private TimeSpan? Expires(YamlNode value, string where)
        {
            var text = Scalar(value, $"{where}.expires");
            if (text is null)
            {
                return null;
            }

            if (ParseDuration(text) is not { } duration || duration < ApprovalRouting.MinExpiry || duration > ApprovalRouting.MaxExpiry)
            {
                Error(value.Start, $"{where}.expires: '{text}' is not a duration from 1s to 30d: a number and a unit (s, m, h, d), or several, such as 90s, 15m, 1h30m, 2d");
                return null;
            }

            return duration;
        }

        // "1h30m": numbers each followed by one of s, m, h, d, units in decreasing order and each at most once.
        private static TimeSpan? ParseDuration(string text)
        {
            var total = TimeSpan.Zero;
            var last = int.MaxValue;
            var i = 0;
            if (text.Length == 0 || text.Length > 32)
            {
                return null;
            }

            while (i < text.Length)
            {
                var start = i;
                while (i < text.Length && char.IsAsciiDigit(text[i]))
                {
                    i++;
                }

                if (i == start || i == text.Length || i - start > 6)
                {
                    return null;
                }

                var number = long.Parse(text.AsSpan(start, i - start), System.Globalization.CultureInfo.InvariantCulture);
                var (rank, unit) = text[i] switch
                {
                    'd' => (3, TimeSpan.FromDays(1)),
                    'h' => (2, TimeSpan.FromHours(1)),
                    'm' => (1, TimeSpan.FromMinutes(1)),
                    's' => (0, TimeSpan.FromSeconds(1)),
                    _ => (-1, TimeSpan.Zero),
                };
                if (rank < 0 || rank >= last)
                {
                    return null;
                }

                last = rank;
                total += unit * number;
                i++;
            }

            return total;
        }

        private PolicyEffect? Effect(YamlNode value, string where)
        {
            var text = Scalar(value, $"{where}.effect");
            switch (text)
            {
                case null:
                    return null;
                case "allow":
                    return PolicyEffect.Allow;
                case "ask":
                    return PolicyEffect.Ask;
                case "deny":
                    return PolicyEffect.Deny;
                default:
                    Error(value.Start, $"{where}.effect: unknown effect '{text}': use allow, ask or deny");
                    return null;
            }
        }

        private bool Locked(YamlNode value, string where)
        {
            var text = Scalar(value, $"{where}.locked");
            var locked = text switch
            {
                "true" or "True" or "TRUE" => true,
                "false" or "False" or "FALSE" => false,
                null => false,
                _ => (bool?)null,
            };
            if (locked is null)
            {
                Error(value.Start, $"{where}.locked: '{text}' is not a boolean: use true or false");
                return false;
            }

            if (locked.Value && level != PolicyLevel.Org)
            {
                Error(value.Start, $"{where}.locked: only org rules can be locked; a {Name(level)} rule cannot stop other levels from deciding");
            }

            return locked.Value;
        }

        private IReadOnlyDictionary<string, IReadOnlyList<string>> Args(YamlNode value, string where)
        {
            if (IsNull(value))
            {
                return PolicyRule.NoArgs;
            }

            if (value is not YamlMappingNode map)
            {
                Error(value.Start, $"{where}.args: a mapping from argument name to a glob or a list of globs, not {Describe(value)}");
                return PolicyRule.NoArgs;
            }

            var args = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
            foreach (var (name, matcher) in Entries(map, $"{where}.args", allowed: null))
            {
                var at = $"{where}.args.{name}";
                if (IsNull(matcher))
                {
                    Error(matcher.Start, $"{at}: no glob given: use a glob string or a list of globs");
                    continue;
                }

                var globs = new List<string>();
                if (matcher is YamlSequenceNode list)
                {
                    if (list.Children.Count == 0)
                    {
                        Error(list.Start, $"{at}: an empty list matches nothing: give at least one glob");
                    }

                    for (var i = 0; i < list.Children.Count; i++)
                    {
                        AddGlob(list.Children[i], $"{at}[{i}]", globs);
                    }
                }
                else
                {
                    AddGlob(matcher, at, globs);
                }

                args[name] = globs;
            }

            return args;
        }

        private void AddGlob(YamlNode node, string at, List<string> globs)
        {
            if (node is not YamlScalarNode || IsNull(node))
            {
                Error(node.Start, $"{at}: a glob must be a string, not {Describe(node)}");
                return;
            }

            var text = Scalar(node, at);
            if (text is not null && Glob(node, text, at))
            {
                globs.Add(text);
            }
        }

        private bool Glob(YamlNode node, string pattern, string at)
        {
            if (PolicyGlob.TryParse(pattern, out _, out var error))
            {
                return true;
            }

            Error(node.Start, $"{at}: {error}");
            return false;
        }

        private string? Scalar(YamlNode node, string at)
        {
            if (node is YamlScalarNode scalar && !IsNull(node))
            {
                return scalar.Value ?? "";
            }

            Error(node.Start, $"{at}: expected a string, not {Describe(node)}");
            return null;
        }

        // Yields the entries with string keys once each, reporting keys that are not scalars, repeated or unknown.
        private IEnumerable<(string Key, YamlNode Value)> Entries(YamlMappingNode map, string where, string[]? allowed)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (keyNode, value) in map.Children)
            {
                if (keyNode is not YamlScalarNode { Value: { Length: > 0 } key })
                {
                    Error(keyNode.Start, $"{where}: keys must be non-empty strings, not {Describe(keyNode)}");
                    continue;
                }

                if (!seen.Add(key))
                {
                    Error(keyNode.Start, $"{where}: '{key}' appears twice");
                    continue;
                }

                if (allowed is not null && Array.IndexOf(allowed, key) < 0)
                {
                    Error(keyNode.Start, $"{where}: unknown key '{key}'; allowed keys are {string.Join(", ", allowed)}");
                    continue;
                }

                yield return (key, value);
            }
        }

        private static bool HasKey(YamlMappingNode map, string key) =>
            map.Children.Keys.Any(k => k is YamlScalarNode { Value: var v } && v == key);

        private static string Describe(YamlNode node) => node switch
        {
            YamlMappingNode => "a mapping",
            YamlSequenceNode => "a list",
            _ when IsNull(node) => "nothing (null)",
            YamlScalarNode s => $"the scalar '{s.Value}'",
            _ => "an alias",
        };

        private static string Name(PolicyLevel level) => level switch
        {
            PolicyLevel.Org => "org",
            PolicyLevel.Team => "team",
            _ => "user",
        };
    }
}
