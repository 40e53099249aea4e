using System.CommandLine;
using HarnessServer.Client;

namespace HarnessServer.Cli.Commands;

internal static class ApprovalCommands
{
    public static Command Approvals(CliEnvironment environment)
    {
        var status = new Option<string>("--status") { Description = "pending, approved, rejected, expired or all.", DefaultValueFactory = _ => "pending" };
        var list = new Command("list", "Approvals in your scope (the teams you approve for; admins: the tenant).") { status };
        list.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var approvals = await c.Client.ListApprovalsAsync(parsed.GetValue(status), ct);
            c.Print(approvals, o =>
            {
                foreach (var a in approvals.Approvals)
                {
                    o.WriteLine($"{a.Id}  {a.Status,-9} {a.Tool,-16} by {a.RequestedBy}  expires {a.ExpiresAt:u}");
                    o.WriteLine($"  arguments: {a.Arguments.GetRawText()}");
                    o.WriteLine($"  reason: {a.Reason}");
                }

                if (approvals.Approvals.Count == 0)
                {
                    o.WriteLine("No approvals.");
                }
            });
            return ExitCodes.Ok;
        }));

        return new Command("approvals", "List and decide calls held for approval.") { list, Decide(environment, "approve", true), Decide(environment, "reject", false) };
    }

    private static Command Decide(CliEnvironment environment, string name, bool approve)
    {
        var id = new Argument<Guid>("id") { Description = "The approval's id (from approvals list, or the call's output)." };
        var comment = new Option<string?>("--comment") { Description = "Why, for the audit trail and the requester." };
        var command = new Command(name, approve ? "Approve a pending call: it runs." : "Reject a pending call: it does not run.") { id, comment };
        command.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var decided = await c.Client.DecideApprovalAsync(parsed.GetValue(id),
                new ApprovalDecisionBody { Approve = approve, Comment = parsed.GetValue(comment) }, ct);
            c.Print(decided, o => o.WriteLine($"{decided.Id}  {decided.Status}  {decided.Tool} (requested by {decided.RequestedBy}, decided by {decided.DecidedBy})"));
            return ExitCodes.Ok;
        }));
        return command;
    }
}
