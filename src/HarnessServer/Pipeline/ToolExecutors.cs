using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Errors;
using HarnessServer.Pipeline;
using HarnessServer.Sandbox;
using HarnessServer.Tools;

namespace HarnessServer.Pipeline;

/// <summary>
/// Runs a call that the pipeline has validated and allowed: the file tools inside the session workspace (confined
/// beneath its root), <c>shell.exec</c> and command tools in a fresh bubblewrap sandbox, <c>http.fetch</c> through the
/// allow-listed client, memory tools through the tenant's memory, each call that can write the workspace held to its
/// quota (<see cref="WorkspaceQuotaGuard"/>). Only <see cref="ExecuteStep"/> calls this.
/// </summary>
internal sealed class ToolExecutors(
    BubblewrapSandbox sandbox, HttpFetchTool http, HttpFetchAllowList allowList, Memory.MemoryStore memory, Upstreams.McpUpstreamCalls upstreams,
    WorkspaceQuotaGuard quota)
{
    public Task<ToolOutcome> RunAsync(ToolCallContext context, CancellationToken cancellationToken) =>
        quota.RunAsync(context, token => RunToolAsync(context, token), cancellationToken);

    private async Task<ToolOutcome> RunToolAsync(ToolCallContext context, CancellationToken cancellationToken)
    {
        var tool = context.Tool!;
        var arguments = context.Request.Arguments;
        try
        {
            if (tool.Kind == ToolKind.Mcp)
            {
                return await upstreams.RunAsync(context.Caller.TenantId, tool, arguments, context.SessionId is null ? null : context.Workspace, cancellationToken);
            }

            return tool.Kind == ToolKind.Command
                ? await RunCommandAsync(context, tool, arguments, cancellationToken)
                : tool.Name switch
                {
                    BuiltInTools.FsRead => Json(context.Workspace.Read(Text(arguments, "path"))),
                    BuiltInTools.FsWrite => Json(context.Workspace.Write(Text(arguments, "path"), Text(arguments, "content"))),
                    BuiltInTools.FsList => ToolOutcome.Success(ReachedFiles.List(
                        context.Workspace.List(Text(arguments, "path")), context.Workspace.ResolveBeneath(Text(arguments, "path")), context.Resolver!)),
                    BuiltInTools.FsSearch => ToolOutcome.Success(ReachedFiles.Search(
                        context.Workspace.Search(Text(arguments, "pattern"), OptionalText(arguments, "path"), cancellationToken), context.Resolver!)),
                    BuiltInTools.ShellExec => Shell(await sandbox.RunAsync(new SandboxCommand
                    {
                        WorkspacePath = context.Workspace.FullPath,
                        User = context.Workspace.Owner,
                        Command = ShellCommandToRun(context, arguments),
                        TimeoutSeconds = arguments.TryGetProperty("timeoutSeconds", out var t) ? Integer(t) : null,
                    }, cancellationToken)),
                    BuiltInTools.HttpFetch => await http.FetchAsync(
                        (await allowList.GetAsync(context.Caller.TenantId, cancellationToken)).Effective, Text(arguments, "url"), cancellationToken),
                    // Membership of the namespace is checked by the store; the pipeline has already decided the policy.
                    BuiltInTools.MemorySave => await SaveMemoryAsync(context, arguments, cancellationToken),
                    BuiltInTools.MemorySearch => Json(await memory.SearchAsync(context.Caller, Text(arguments, "namespace"), Text(arguments, "query"),
                        arguments.TryGetProperty("k", out var k) ? Integer(k) : Memory.MemoryStore.DefaultK,
                        Memory.MemorySearchModes.Parse(OptionalText(arguments, "mode")), cancellationToken)),
                    _ => ToolOutcome.Failure("not_runnable", $"The built-in tool '{tool.Name}' cannot run in this server."),
                };
        }
        catch (SandboxException e)
        {
            return ToolOutcome.Failure(e.Code, e.Message);
        }
        catch (Errors.HarnessError e) when (e is not Audit.AuditUnavailableException)
        {
            // A refusal of the tool itself (not a member of the namespace, content too large) is the call's result.
            return ToolOutcome.Failure(e.Code, e.Message);
        }
    }

    // The words that run are the words decided: the decided line (globs expanded) rendered with every word quoted.
    // A line the parser cannot classify ran the decision only under a rule without a command matcher, as written.
    private static string ShellCommandToRun(ToolCallContext context, JsonElement arguments)
    {
        var decided = context.ShellLine ?? Text(arguments, "command");
        return Policies.ShellLine.Render(decided) ?? decided;
    }

    // The HTTP memory route holds a write with its metadata and expiry as these same arguments.
    private async Task<ToolOutcome> SaveMemoryAsync(ToolCallContext context, JsonElement arguments, CancellationToken cancellationToken)
    {
        DateTimeOffset? expiresAt = null;
        if (OptionalText(arguments, "expiresAt") is { } expiry)
        {
            if (!DateTimeOffset.TryParse(expiry, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var parsed))
            {
                return ToolOutcome.Failure("invalid_expiry", $"expiresAt '{expiry}' is not an RFC 3339 time.");
            }

            expiresAt = parsed;
        }

        var metadata = arguments.TryGetProperty("metadata", out var m) && m.ValueKind == JsonValueKind.Object ? JsonObject.Create(m) : null;
        return Json(await memory.SaveAsync(context.Caller, Text(arguments, "namespace"), Text(arguments, "content"), metadata, expiresAt,
            new Memory.MemoryProvenance(context.SessionId, context.Request.TurnId), cancellationToken));
    }

    private async Task<ToolOutcome> RunCommandAsync(ToolCallContext context, ToolDefinition tool, JsonElement arguments, CancellationToken cancellationToken)
    {
        var argv = tool.ArgvFor(arguments);
        return Shell(await sandbox.RunAsync(new SandboxCommand { WorkspacePath = context.Workspace.FullPath, User = context.Workspace.Owner, Argv = argv }, cancellationToken));
    }

    private static ToolOutcome Shell(SandboxResult result)
    {
        var node = new JsonObject
        {
            ["exitCode"] = result.ExitCode,
            ["stdout"] = result.StdoutOutput.Value,
            ["stderr"] = result.StderrOutput.Value,
            ["truncated"] = result.Truncated,
            ["durationMs"] = result.DurationMs,
        };
        // Output that is not NUL-free UTF-8 is given as base64, and says so: stored and answered without loss.
        if (result.StdoutOutput.Base64)
        {
            node["stdoutEncoding"] = OutputText.Base64Encoding;
        }

        if (result.StderrOutput.Base64)
        {
            node["stderrEncoding"] = OutputText.Base64Encoding;
        }

        if (result.Succeeded)
        {
            return ToolOutcome.Success(node);
        }

        return result.TimedOut
            ? ToolOutcome.Failure("timeout", $"The command was killed at its time limit after {result.DurationMs} ms.", node)
            : ToolOutcome.Failure("exit_code", $"The command exited with code {result.ExitCode}.", node);
    }

    private static ToolOutcome Json<T>(T result) => ToolOutcome.Success(JsonSerializer.SerializeToNode(result, Sessions.AuditViews.Json)!);

    // The schema checked an integer in range, but JSON Schema counts 5.0 as an integer and GetInt32 does not.
    private static int Integer(JsonElement value) => value.TryGetInt32(out var exact) ? exact : (int)value.GetDecimal();

    private static string Text(JsonElement arguments, string name) => arguments.GetProperty(name).GetString()!;

    private static string? OptionalText(JsonElement arguments, string name) =>
        arguments.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
