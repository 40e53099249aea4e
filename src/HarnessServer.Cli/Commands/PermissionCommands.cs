using System.CommandLine;
using HarnessServer.Client;

namespace HarnessServer.Cli.Commands;

internal static class PermissionCommands
{
    public static Command Permissions(CliEnvironment environment)
    {
        var user = new Argument<string>("user") { Description = "The user to explain for." };
        var tool = new Argument<string>("tool") { Description = "The tool, e.g. shell.exec." };
        var arguments = new Argument<string>("args") { Description = "The call's arguments as a JSON object.", DefaultValueFactory = _ => "{}" };
        var teams = new Option<string?>("--teams") { Description = "The user's teams, comma-separated." };
        var explain = new Command("explain", "What a call would get for a user, and which rule decides it; nothing runs.") { user, tool, arguments, teams };
        explain.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var request = new SimulationRequest
            {
                User = parsed.GetValue(user)!,
                Tool = parsed.GetValue(tool)!,
                Arguments = SessionCommands.ParseObject(parsed.GetValue(arguments)!),
                Teams = (parsed.GetValue(teams) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            };
            var result = await c.Client.SimulatePolicyAsync(request, ct);
            c.Print(result, o =>
            {
                o.WriteLine($"{request.User} {request.Tool}: {result.Effect}");
                o.WriteLine($"decided by {result.Level}{(result.Source is null ? "" : $" {result.Source}")}{(result.Index is null ? "" : $" rule #{result.Index}")}{(result.Locked ? " (locked)" : "")}");
                o.WriteLine($"why: {result.Reason}");
            });
            return ExitCodes.Ok;
        }));
        return new Command("permissions", "Explain permissions.") { explain };
    }
}
