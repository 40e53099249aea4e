using System.CommandLine;

namespace HarnessServer.Cli.Commands;

internal static class ToolCommands
{
    public static Command Tools(CliEnvironment environment)
    {
        var command = new Command("tools", "The tenant's tool registry (admins).");
        command.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var tools = await c.Client.ListToolsAsync(ct);
            c.Print(tools, o =>
            {
                foreach (var tool in tools.Tools)
                {
                    o.WriteLine($"{tool.Name,-20} {tool.Kind,-9} v{tool.Version} {(tool.Enabled ? "enabled " : "disabled")}  {tool.Description}");
                }
            });
            return ExitCodes.Ok;
        }));
        return command;
    }
}
