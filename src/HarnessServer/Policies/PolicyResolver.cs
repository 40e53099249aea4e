using System.Buffers;
using System.Collections.Concurrent;

namespace HarnessServer.Policies;

/// <summary>
/// Decides calls for one user with one set of teams. Each tool's candidate rules are gathered once, ordered by
/// how resolution reads them (locked org rules, then user, teams, org), so a warm <see cref="Decide"/> only looks
/// at that tool's rules and does not allocate.
/// </summary>
internal sealed class PolicyResolver
{
    public const string ShellTool = "shell.exec";

    // Bounds memory when callers send many unknown tool names; past it plans are built per call.
    private const int MaxCachedTools = 4096;
    /// <summary>Longer argument values are not matched; the call is decided as unclassifiable.</summary>
    public const int MaxArgumentLength = 65_536;

    private const string PathEscapes =
        "path escapes the workspace or is not a valid path; most restrictive of the org default and every rule for this tool";

    private const string ArgumentTooLong =
        "an argument a rule constrains is longer than 65,536 characters; most restrictive of the org default and every rule for this tool";

    private readonly ConcurrentDictionary<string, ToolPlan> _plans = new(StringComparer.Ordinal);
    private readonly CompiledPolicy _policy;
    private readonly CompiledDocument? _user;
    private readonly CompiledDocument[] _teams;

    internal PolicyResolver(CompiledPolicy policy, string userId, IReadOnlyList<string> teams, CompiledDocument? user, CompiledDocument[] teamDocuments)
    {
        _policy = policy;
        UserId = userId;
        Teams = teams;
        _user = user;
        _teams = teamDocuments;
    }

    public string UserId { get; }

    /// <summary>The user's teams, sorted and without repeats.</summary>
    public IReadOnlyList<string> Teams { get; }

    /// <summary>
    /// Decides one call. <paramref name="args"/> holds the call's arguments as strings (null counts as absent); a
    /// <c>path</c> argument is normalised against the workspace first (an absolute path is accepted only beneath
    /// <paramref name="workspaceRoot"/>), and a <c>shell.exec</c> <c>command</c> is split into simple commands.
    /// </summary>
    public PolicyDecision Decide(string tool, IReadOnlyDictionary<string, string?> args, string? workspaceRoot = null)
    {
        ArgumentNullException.ThrowIfNull(tool);
        ArgumentNullException.ThrowIfNull(args);
        var plan = Plan(tool);
        foreach (var name in plan.ConstrainedArguments)
        {
            if (args.TryGetValue(name, out var value) && value is not null && value.Length > MaxArgumentLength)
            {
                return plan.Unclassifiable(ArgumentTooLong);
            }
        }

        if (!args.TryGetValue("path", out var rawPath) || rawPath is null)
        {
            return DecideCommand(plan, args, default, false);
        }

        char[]? rented = null;
        try
        {
            var buffer = rawPath.Length <= 256 ? stackalloc char[256] : (rented = ArrayPool<char>.Shared.Rent(rawPath.Length));
            var length = WorkspacePath.Normalize(rawPath, workspaceRoot, buffer);
            return length < 0
                ? plan.Unclassifiable(PathEscapes)
                : DecideCommand(plan, args, buffer[..length], true);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<char>.Shared.Return(rented);
            }
        }
    }

    private static PolicyDecision DecideCommand(ToolPlan plan, IReadOnlyDictionary<string, string?> args, ReadOnlySpan<char> path, bool hasPath)
    {
        if (!plan.IsShell || !args.TryGetValue("command", out var line) || line is null)
        {
            return DecideCall(plan, new CallView(args, path, hasPath, default, false));
        }

        if (line.Length > ShellCommandLine.MaxLength)
        {
            return UnclassifiableLine(plan, args, path, hasPath, ShellUnclassifiable.TooLong) with { CommandLine = line };
        }

        char[]? rentedText = null;
        ShellWord[]? rentedWords = null;
        try
        {
            var text = line.Length <= 512 ? stackalloc char[512] : (rentedText = ArrayPool<char>.Shared.Rent(line.Length));
            var words = line.Length <= 256 ? stackalloc ShellWord[128] : (rentedWords = ArrayPool<ShellWord>.Shared.Rent(Math.Min(ShellCommandLine.MaxWords, (line.Length / 2) + 1)));
            Span<ShellCommand> commands = stackalloc ShellCommand[ShellCommandLine.CommandCapacity];
            var why = ShellCommandLine.Parse(line, text, words, commands, out _, out var count);
            if (why != ShellUnclassifiable.None)
            {
                return UnclassifiableLine(plan, args, path, hasPath, why) with { CommandLine = line };
            }

            var worst = default(PolicyDecision);
            var deciding = 0;
            for (var i = 0; i < count; i++)
            {
                ref readonly var simple = ref commands[i];
                var command = text.Slice(simple.TextStart, simple.TextLength);
                var program = words[simple.FirstWord];
                var bareStart = program.Start + text.Slice(program.Start, program.Length).LastIndexOf('/') + 1;
                var bareProgram = text[bareStart..(simple.TextStart + simple.TextLength)];
                var decision = DecideCall(plan, new CallView(args, path, hasPath, command, true, bareProgram, simple.TriggerStart, simple.TriggerEnd));
                if (i == 0 || decision.Effect > worst.Effect)
                {
                    worst = decision;
                    deciding = i;
                    if (worst.Effect == PolicyEffect.Deny)
                    {
                        break;
                    }
                }
            }

            ref readonly var decided = ref commands[deciding];
            var word = decided.TriggerWord >= 0 ? words[decided.TriggerWord] : words[decided.FirstWord];
            return worst with
            {
                CommandLine = line,
                SimpleCommandRange = decided.Source,
                WordRange = word.Source,
                Form = decided.TriggerWord >= 0 ? decided.Form : (short)-1,
            };
        }
        finally
        {
            if (rentedText is not null)
            {
                ArrayPool<char>.Shared.Return(rentedText);
            }

            if (rentedWords is not null)
            {
                ArrayPool<ShellWord>.Shared.Return(rentedWords);
            }
        }
    }

    // The contract: a rule without a command matcher matches every line, classifiable or not; the line gets the most
    // restrictive of every shell rule of the user, and of the org default only when no such rule is a candidate.
    private static PolicyDecision UnclassifiableLine(ToolPlan plan, IReadOnlyDictionary<string, string?> args, ReadOnlySpan<char> path, bool hasPath, ShellUnclassifiable why)
    {
        var call = new CallView(args, path, hasPath, default, false);
        foreach (var group in plan.Groups)
        {
            foreach (var rule in group)
            {
                if (!rule.ConstrainsCommand && Matches(rule, call))
                {
                    return plan.Unclassifiable(ShellCommandLine.Describe(why), withDefault: false);
                }
            }
        }

        return plan.Unclassifiable(ShellCommandLine.Describe(why));
    }

    // The contract's procedure: locked rules first, then the most specific level with a candidate, the most
    // restrictive candidate within it, and the org default when there is none.
    private static PolicyDecision DecideCall(ToolPlan plan, CallView call)
    {
        foreach (var group in plan.Groups)
        {
            CompiledRule? best = null;
            foreach (var rule in group)
            {
                if ((best is null || rule.Effect > best.Effect) && Matches(rule, call))
                {
                    best = rule;
                    if (best.Effect == PolicyEffect.Deny)
                    {
                        break;
                    }
                }
            }

            if (best is not null)
            {
                return new PolicyDecision(best.Effect, best.Info, best.Info.Reason);
            }
        }

        return new PolicyDecision(plan.Default.Effect, plan.Default, plan.Default.Reason);
    }

    private static bool Matches(CompiledRule rule, CallView call)
    {
        foreach (var arg in rule.Args)
        {
            ReadOnlySpan<char> value;
            var crossesSlash = false;
            if (arg.IsPath && call.HasPath)
            {
                value = call.Path;
            }
            else if (arg.IsCommand && call.HasCommand)
            {
                // "/bin/rm x" must not slip past a deny "rm *": ask and deny rules also see the bare program name.
                // Allow rules do not, or "./git" (any script in the workspace) would pass for "git". An allow rule
                // admits a command that runs other code only when its glob spells the deciding word out.
                var matched = rule.Effect != PolicyEffect.Allow
                    ? arg.IsMatch(call.Command, crossesSlash: true) || arg.IsMatch(call.BareProgramCommand, crossesSlash: true)
                    : call.TriggerEnd > 0
                        ? arg.IsMatchSpelling(call.Command, crossesSlash: true, call.TriggerStart, call.TriggerEnd)
                        : arg.IsMatch(call.Command, crossesSlash: true);
                if (matched)
                {
                    continue;
                }

                return false;
            }
            else if (call.Args.TryGetValue(arg.Name, out var raw) && raw is not null)
            {
                value = raw;
            }
            else
            {
                return false;
            }

            if (!arg.IsMatch(value, crossesSlash))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Whether to offer <paramref name="tool"/> to a model: some call of it could be allowed or asked. False when
    /// an argument-free deny decides every call before any allow or ask rule could.
    /// </summary>
    public bool IsOffered(string tool)
    {
        foreach (var group in Plan(tool).Groups)
        {
            if (group.Any(r => r.Effect == PolicyEffect.Deny && r.Args.Length == 0))
            {
                return false;
            }

            if (group.Any(r => r.Effect != PolicyEffect.Deny))
            {
                return true;
            }
        }

        return _policy.OrgDefault.Effect != PolicyEffect.Deny;
    }

    /// <summary>The effective matrix for <paramref name="tools"/> (typically the tenant's registry names).</summary>
    /// <param name="tools">the tools to list</param>
    /// <param name="defaultExpiry">the expiry of an ask whose rule names none (<c>Harness:Approvals:Expiry</c>)</param>
    public PermissionMatrix Matrix(IEnumerable<string> tools, TimeSpan? defaultExpiry = null)
    {
        ArgumentNullException.ThrowIfNull(tools);
        return new PermissionMatrix([.. tools.Distinct(StringComparer.Ordinal).Select(t => ToolPermissions(t, defaultExpiry))]);
    }

    private ToolPermission ToolPermissions(string tool, TimeSpan? defaultExpiry)
    {
        var plan = Plan(tool);
        var blanket = plan.Default;
        foreach (var group in plan.Groups)
        {
            var best = group.Where(r => r.Args.Length == 0).MaxBy(r => r.Effect);
            if (best is not null)
            {
                blanket = best.Info;
                break;
            }
        }

        var rules = plan.Groups[1].Concat(plan.Groups[2]).Concat(plan.Groups[0]).Concat(plan.Groups[3])
            .Select(r => new PermissionRule(
                Name(r.Level),
                r.Info.Source,
                r.Index,
                Name(r.Effect),
                r.Info.Rule?.Args ?? PolicyRule.NoArgs,
                r.Locked,
                r.Info.Reason) { Approvers = ApprovalRequirements.Of(r.Info.Routing, defaultExpiry) })
            .ToArray();
        return new ToolPermission(tool, Name(blanket.Effect), rules) { Approvers = ApprovalRequirements.Of(blanket.Routing, defaultExpiry) };
    }

    private static string Name(PolicyEffect effect) => effect switch
    {
        PolicyEffect.Allow => "allow",
        PolicyEffect.Ask => "ask",
        _ => "deny",
    };

    private static string Name(PolicyLevel level) => level switch
    {
        PolicyLevel.Org => "org",
        PolicyLevel.Team => "team",
        _ => "user",
    };

    private ToolPlan Plan(string tool)
    {
        if (_plans.TryGetValue(tool, out var plan))
        {
            return plan;
        }

        plan = BuildPlan(tool);
        return _plans.Count < MaxCachedTools ? _plans.GetOrAdd(tool, plan) : plan;
    }

    private ToolPlan BuildPlan(string tool)
    {
        var org = _policy.Org.RulesFor(tool).ToArray();
        var user = _user?.RulesFor(tool).ToArray() ?? [];
        var teams = _teams.SelectMany(t => t.RulesFor(tool)).ToArray();
        CompiledRule[][] groups = [[.. org.Where(r => r.Locked)], user, teams, [.. org.Where(r => !r.Locked)]];

        // An unclassifiable call gets the most restrictive of the org default and every rule for the tool (of the
        // rules alone when one without a command matcher applies to the line).
        var worst = _policy.OrgDefault;
        PolicyRuleInfo? worstRule = null;
        foreach (var rule in groups.SelectMany(g => g))
        {
            if (rule.Effect > worst.Effect)
            {
                worst = rule.Info;
            }

            // On a tie the explanation names a rule without a command matcher: that is the one that matched the line.
            if (worstRule is null || rule.Effect > worstRule.Effect
                || (rule.Effect == worstRule.Effect && !rule.ConstrainsCommand && worstRule.Rule?.Args.ContainsKey("command") == true))
            {
                worstRule = rule.Info;
            }
        }

        string[] constrained = [.. groups.SelectMany(g => g).SelectMany(r => r.Args).Select(a => a.Name).Distinct(StringComparer.Ordinal)];
        return new ToolPlan(tool == ShellTool, groups, constrained, _policy.OrgDefault, worst, worstRule ?? worst);
    }

    private sealed class ToolPlan(
        bool isShell,
        CompiledRule[][] groups,
        string[] constrainedArguments,
        PolicyRuleInfo orgDefault,
        PolicyRuleInfo mostRestrictive,
        PolicyRuleInfo mostRestrictiveRule)
    {
        public bool IsShell { get; } = isShell;

        /// <summary>The argument names any rule for the tool constrains.</summary>
        public string[] ConstrainedArguments { get; } = constrainedArguments;

        /// <summary>Locked org rules, user rules, all teams' rules, other org rules: the order resolution reads them.</summary>
        public CompiledRule[][] Groups { get; } = groups;

        public PolicyRuleInfo Default { get; } = orgDefault;

        public PolicyDecision Unclassifiable(string reason, bool withDefault = true) =>
            withDefault
                ? new(mostRestrictive.Effect, mostRestrictive, reason) { Unclassifiable = true }
                : new(mostRestrictiveRule.Effect, mostRestrictiveRule, reason) { Unclassifiable = true };
    }

    private readonly ref struct CallView
    {
        public CallView(
            IReadOnlyDictionary<string, string?> args,
            ReadOnlySpan<char> path,
            bool hasPath,
            ReadOnlySpan<char> command,
            bool hasCommand,
            ReadOnlySpan<char> bareProgramCommand = default,
            int triggerStart = 0,
            int triggerEnd = 0)
        {
            TriggerStart = triggerStart;
            TriggerEnd = triggerEnd;
            BareProgramCommand = bareProgramCommand;
            Args = args;
            Path = path;
            HasPath = hasPath;
            Command = command;
            HasCommand = hasCommand;
        }

        public IReadOnlyDictionary<string, string?> Args { get; }

        public ReadOnlySpan<char> Path { get; }

        public bool HasPath { get; }

        public ReadOnlySpan<char> Command { get; }

        public bool HasCommand { get; }

        /// <summary>Where in <see cref="Command"/> the word that makes it run other code starts and ends (end 0: none).</summary>
        public int TriggerStart { get; }

        public int TriggerEnd { get; }

        /// <summary>The simple command with its program's directory removed ("/bin/rm x" as "rm x").</summary>
        public ReadOnlySpan<char> BareProgramCommand { get; }
    }
}
