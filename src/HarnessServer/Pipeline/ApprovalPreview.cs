using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Policies;
using HarnessServer.Sandbox;
using HarnessServer.Tools;

namespace HarnessServer.Pipeline;

/// <summary>
/// What a held call will do, made when it is asked so an approver decides without guessing: for <c>fs.write</c> the
/// diff against the file as it is now (or that it creates one), for <c>shell.exec</c> the decided words of each simple
/// command (globs already expanded), for <c>http.fetch</c> the host it reaches, for <c>memory.save</c> the namespace and
/// the text, for a command tool the argv that runs. Large parts are cut at <see cref="MaxChars"/> with
/// <c>truncated: true</c>; the call's arguments on the approval are always whole. The workspace it describes is the one
/// the approval is bound to (<see cref="CheckpointStep"/>).
/// </summary>
internal static class ApprovalPreview
{
    public const int MaxChars = 20_000;

    public static JsonObject? Of(ToolCallContext context)
    {
        var arguments = context.Request.Arguments;
        try
        {
            return context.Tool switch
            {
                { Kind: ToolKind.Command } tool => Command(tool, arguments),
                // The arguments ride with every approval; this says where they go.
                { Kind: ToolKind.Mcp, Argv: [var server, var upstreamTool] } => new JsonObject { ["kind"] = "mcp_call", ["server"] = server, ["tool"] = upstreamTool },
                { Name: BuiltInTools.FsWrite } => FileWrite(context.Workspace, Text(arguments, "path"), Text(arguments, "content")),
                { Name: BuiltInTools.ShellExec } => Shell(context.ShellLine ?? Text(arguments, "command")),
                { Name: BuiltInTools.HttpFetch } => Fetch(Text(arguments, "url")),
                { Name: BuiltInTools.MemorySave } => Limited(new JsonObject { ["kind"] = "memory_write", ["namespace"] = Text(arguments, "namespace") },
                    "content", Text(arguments, "content")),
                _ => null,
            };
        }
        catch (Exception e) when (e is SandboxException or KeyNotFoundException or InvalidOperationException or UriFormatException)
        {
            // A preview that cannot be made leaves the approver the arguments; it never fails the call.
            return new JsonObject { ["kind"] = "unavailable", ["reason"] = e.Message };
        }
    }

    private static JsonObject FileWrite(Workspace workspace, string path, string content)
    {
        FileContent? current;
        try
        {
            current = workspace.Read(path);
        }
        catch (SandboxException e) when (e.Code == SandboxErrors.NotFound)
        {
            current = null;
        }

        var preview = new JsonObject { ["kind"] = "file_write", ["path"] = path, ["exists"] = current is not null };
        if (current is { Encoding: not null })
        {
            preview["binary"] = true;
            return preview;
        }

        return Limited(preview, "diff", LineDiff.Unified(current?.Content ?? "", content));
    }

    private static JsonObject Shell(string line)
    {
        var preview = new JsonObject { ["kind"] = "shell", ["line"] = line };
        preview["commands"] = ShellLine.Words(line) is { } commands
            ? new JsonArray([.. commands.Select(words => (JsonNode)new JsonArray([.. words.Select(w => (JsonNode)JsonValue.Create(w))]))])
            : null;
        return preview;
    }

    private static JsonObject Fetch(string url)
    {
        var uri = new Uri(url, UriKind.Absolute);
        return new JsonObject { ["kind"] = "http_fetch", ["url"] = url, ["host"] = uri.IdnHost, ["scheme"] = uri.Scheme };
    }

    private static JsonObject Command(ToolDefinition tool, JsonElement arguments) =>
        new() { ["kind"] = "command", ["argv"] = new JsonArray([.. tool.ArgvFor(arguments).Select(a => (JsonNode)JsonValue.Create(a))]) };

    private static JsonObject Limited(JsonObject preview, string name, string text)
    {
        preview[name] = text.Length > MaxChars ? text[..MaxChars] : text;
        preview["truncated"] = text.Length > MaxChars;
        return preview;
    }

    private static string Text(JsonElement arguments, string name) =>
        arguments.GetProperty(name).GetString() ?? throw new InvalidOperationException($"'{name}' is not text.");
}
