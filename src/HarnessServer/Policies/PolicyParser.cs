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
    private static readonly string[] RuleKeys = ["tool", "effect", "args", "locked", "reason"];

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
            foreach (var (key, value) in Entries(map, where, RuleKeys))
            {
                switch (key)
                {
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

            return _errors.Count == before && tool is not null && effect is not null
                ? new PolicyRule(tool, effect.Value, args, locked, string.IsNullOrEmpty(reason) ? null : reason)
                : null;
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
