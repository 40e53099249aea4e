using System.CommandLine;
using System.Text.Json;
using HarnessServer.Client;

namespace HarnessServer.Cli.Commands;

internal static class SessionCommands
{
    public static Command Sessions(CliEnvironment environment)
    {
        var create = new Command("create", "Create a session with its own workspace.");
        create.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var session = await c.Client.CreateSessionAsync(ct);
            c.Print(session, o => o.WriteLine($"{session.Id}  {session.Status}  owner {session.Owner}"));
            return ExitCodes.Ok;
        }));

        var id = new Argument<Guid>("id") { Description = "The session's id." };
        var show = new Command("show", "A session: its status and its tool calls.") { id };
        show.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var session = await c.Client.GetSessionAsync(parsed.GetValue(id), ct);
            c.Print(session, o =>
            {
                o.WriteLine($"{session.Id}  {session.Status}  owner {session.Owner}  created {session.CreatedAt:u}");
                foreach (var call in session.ToolCalls)
                {
                    o.WriteLine($"  {call.CreatedAt:u}  {call.Tool,-16} {call.Status}");
                }
            });
            return ExitCodes.Ok;
        }));

        return new Command("sessions", "Create and show sessions.") { create, show };
    }

    public static Command Call(CliEnvironment environment)
    {
        var tool = new Argument<string>("tool") { Description = "The tool to call, e.g. fs.write." };
        var arguments = new Argument<string>("json-args") { Description = "The call's arguments as a JSON object.", DefaultValueFactory = _ => "{}" };
        var session = new Option<Guid?>("--session") { Description = "The session to call in (default: a new one)." };
        var command = new Command("call", "Run one tool call through the pipeline and show its decision and result.") { tool, arguments, session };
        command.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var body = new ToolCallBody { Tool = parsed.GetValue(tool)!, Arguments = ParseObject(parsed.GetValue(arguments)!) };
            var sessionId = parsed.GetValue(session) ?? (await c.Client.CreateSessionAsync(ct)).Id;
            var response = await c.Client.CallToolAsync(sessionId, body, ct);
            c.Print(response, o =>
            {
                o.WriteLine($"session {sessionId}  call {response.Id}  {response.Tool}: {JsonNamingPolicy.SnakeCaseLower.ConvertName(response.Status.ToString())}");
                if (response.Decision is { } d)
                {
                    o.WriteLine($"decision: {d.Effect} by {d.Level}{(d.Source is null ? "" : $" ({d.Source}{(d.Index is null ? "" : $" #{d.Index}")})")}: {d.Reason}");
                }

                if (response.ApprovalId is { } approval)
                {
                    o.WriteLine($"held for approval {approval}: harness approvals approve {approval}");
                }

                if (response.Result is { } result)
                {
                    o.WriteLine($"result: {result.ToJsonString()}");
                }

                if (response.Error is { } error)
                {
                    o.WriteLine($"error: {error.Code}: {error.Message}");
                }
            });
            return response.Status switch
            {
                ToolCallStatus.Succeeded => ExitCodes.Ok,
                ToolCallStatus.Pending_approval => ExitCodes.CallPending,
                _ => ExitCodes.CallNotSucceeded,
            };
        }));
        return command;
    }

    public static Command Chat(CliEnvironment environment)
    {
        var message = new Argument<string>("message") { Description = "What to ask the agent." };
        var session = new Option<Guid?>("--session") { Description = "The session to talk in (default: a new one)." };
        var command = new Command("chat", "Run one agent turn, printing the session's tool-call events as they happen.") { message, session };
        command.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var sessionId = parsed.GetValue(session) ?? (await c.Client.CreateSessionAsync(ct)).Id;
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var events = new List<ToolCallEvent>();
            var streaming = Task.Run(async () =>
            {
                try
                {
                    await foreach (var change in c.Client.StreamSessionEventsAsync(sessionId, stop.Token))
                    {
                        lock (events)
                        {
                            events.Add(change);
                            if (!c.Json)
                            {
                                c.Out.WriteLine($"  [{change.Tool}] {change.Status}");
                            }
                        }
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    // The turn ended: the stream is closed by us.
                }
            }, CancellationToken.None);

            var turn = await c.Client.SendMessageAsync(sessionId, new MessageBody { Content = parsed.GetValue(message)! }, ct);
            await stop.CancelAsync();
            await streaming;

            // The stream may trail the turn's answer: what it had not shown yet is shown from the session as stored.
            var stored = await c.Client.GetSessionAsync(sessionId, ct);
            lock (events)
            {
                foreach (var call in stored.ToolCalls.Where(call => !events.Any(e => e.Id == call.Id && e.Status == call.Status)))
                {
                    events.Add(call);
                    if (!c.Json)
                    {
                        c.Out.WriteLine($"  [{call.Tool}] {call.Status}");
                    }
                }

                c.Print(new { session = sessionId, turn, events }, o =>
                {
                    o.WriteLine($"turn {turn.TurnId}: {turn.Status}");
                    if (turn.Reply is { } reply)
                    {
                        o.WriteLine(reply);
                    }

                    if (turn.Error is { } error)
                    {
                        o.WriteLine($"error: {error}");
                    }
                });
            }

            return turn.Error is null ? ExitCodes.Ok : ExitCodes.Failed;
        }));
        return command;
    }

    internal static JsonElement ParseObject(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.ValueKind == JsonValueKind.Object
                ? document.RootElement.Clone()
                : throw new CliException($"The arguments must be a JSON object, not {document.RootElement.ValueKind.ToString().ToLowerInvariant()}.");
        }
        catch (JsonException e)
        {
            throw new CliException($"The arguments are not JSON: {e.Message}");
        }
    }
}
