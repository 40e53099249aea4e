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
            return plan.Unclassifiable(ShellCommandLine.Describe(ShellUnclassifiable.TooLong)) with { CommandLine = line };
        }

        char[]? rented = null;
        try
        {
            var normalized = line.Length <= 512 ? stackalloc char[512] : (rented = ArrayPool<char>.Shared.Rent(line.Length));
            Span<Range> commands = stackalloc Range[ShellCommandLine.MaxCommands];
            Span<Range> originals = stackalloc Range[ShellCommandLine.MaxCommands];
            var why = ShellCommandLine.Split(line, normalized, commands, originals, out var count);
            if (why != ShellUnclassifiable.None)
            {
                return plan.Unclassifiable(ShellCommandLine.Describe(why)) with { CommandLine = line };
            }

            var worst = default(PolicyDecision);
            var deciding = 0;
            for (var i = 0; i < count; i++)
            {
                var command = normalized[commands[i]];
                var program = command.IndexOf(' ') is var space and >= 0 ? command[..space] : command;
                var bareProgram = command[(program.LastIndexOf('/') + 1)..];
                var decision = DecideCall(plan, new CallView(args, path, hasPath, command, true, bareProgram));
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

            return worst with { CommandLine = line, SimpleCommandRange = originals[deciding] };
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<char>.Shared.Return(rented);
            }
        }
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
                // Allow rules do not, or "./git" (any script in the workspace) would pass for "git".
                if (arg.IsMatch(call.Command, crossesSlash: true)
                    || (rule.Effect != PolicyEffect.Allow && arg.IsMatch(call.BareProgramCommand, crossesSlash: true)))
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
    public PermissionMatrix Matrix(IEnumerable<string> tools)
    {
        ArgumentNullException.ThrowIfNull(tools);
        return new PermissionMatrix([.. tools.Distinct(StringComparer.Ordinal).Select(ToolPermissions)]);
    }

    private ToolPermission ToolPermissions(string tool)
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
                r.Info.Reason))
            .ToArray();
        return new ToolPermission(tool, Name(blanket.Effect), rules);
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

        // An unclassifiable call gets the most restrictive of the org default and every rule for the tool.
        var worst = _policy.OrgDefault;
        foreach (var rule in groups.SelectMany(g => g))
        {
            if (rule.Effect > worst.Effect)
            {
                worst = rule.Info;
            }
        }

        string[] constrained = [.. groups.SelectMany(g => g).SelectMany(r => r.Args).Select(a => a.Name).Distinct(StringComparer.Ordinal)];
        return new ToolPlan(tool == ShellTool, groups, constrained, _policy.OrgDefault, worst);
    }

    private sealed class ToolPlan(
        bool isShell,
        CompiledRule[][] groups,
        string[] constrainedArguments,
        PolicyRuleInfo orgDefault,
        PolicyRuleInfo mostRestrictive)
    {
        public bool IsShell { get; } = isShell;

        /// <summary>The argument names any rule for the tool constrains.</summary>
        public string[] ConstrainedArguments { get; } = constrainedArguments;

        /// <summary>Locked org rules, user rules, all teams' rules, other org rules: the order resolution reads them.</summary>
        public CompiledRule[][] Groups { get; } = groups;

        public PolicyRuleInfo Default { get; } = orgDefault;

        public PolicyDecision Unclassifiable(string reason) =>
            new(mostRestrictive.Effect, mostRestrictive, reason) { Unclassifiable = true };
    }

    private readonly ref struct CallView
    {
        public CallView(
            IReadOnlyDictionary<string, string?> args,
            ReadOnlySpan<char> path,
            bool hasPath,
            ReadOnlySpan<char> command,
            bool hasCommand,
            ReadOnlySpan<char> bareProgramCommand = default)
        {
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

        /// <summary>The simple command with its program's directory removed ("/bin/rm x" as "rm x").</summary>
        public ReadOnlySpan<char> BareProgramCommand { get; }
    }
}
