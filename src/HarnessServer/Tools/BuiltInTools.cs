using System.Collections.Frozen;
using System.Text.Json;

namespace HarnessServer.Tools;

/// <summary>The contract's built-in tools and their argument schemas.</summary>
internal static class BuiltInTools
{
    public const string FsRead = "fs.read";
    public const string FsWrite = "fs.write";
    public const string FsList = "fs.list";
    public const string FsSearch = "fs.search";
    public const string ShellExec = "shell.exec";
    public const string HttpFetch = "http.fetch";
    public const string MemorySave = "memory.save";
    public const string MemorySearch = "memory.search";

    /// <summary>
    /// The tools that may run outside a session: they touch no workspace. The memory routes hold an <c>ask</c> as such a
    /// call, so an approver decides it and the approval executor runs it like any other.
    /// </summary>
    public static readonly FrozenSet<string> OutsideSessions = new[] { MemorySave, MemorySearch }.ToFrozenSet(StringComparer.Ordinal);

    public static readonly FrozenDictionary<string, ToolDefinition> All = new ToolDefinition[]
    {
        Define(FsRead, "Read a text file of the session workspace.", """
            {"type":"object","additionalProperties":false,"required":["path"],
             "properties":{"path":{"type":"string","minLength":1,"maxLength":4096,"description":"Path relative to the workspace."}}}
            """),
        Define(FsWrite, "Write (create or replace) a text file of the session workspace.", """
            {"type":"object","additionalProperties":false,"required":["path","content"],
             "properties":{"path":{"type":"string","minLength":1,"maxLength":4096},"content":{"type":"string"}}}
            """),
        Define(FsList, "List a folder of the session workspace.", """
            {"type":"object","additionalProperties":false,"required":["path"],
             "properties":{"path":{"type":"string","minLength":1,"maxLength":4096}}}
            """),
        Define(FsSearch, "Search the text files of the workspace for a pattern.", """
            {"type":"object","additionalProperties":false,"required":["pattern"],
             "properties":{"pattern":{"type":"string","minLength":1,"maxLength":1000},"path":{"type":"string","minLength":1,"maxLength":4096}}}
            """),
        Define(ShellExec, "Run a shell command in the sandboxed workspace (no network).", """
            {"type":"object","additionalProperties":false,"required":["command"],
             "properties":{"command":{"type":"string","minLength":1,"maxLength":65536},
                           "timeoutSeconds":{"type":"integer","minimum":1,"maximum":86400}}}
            """),
        Define(HttpFetch, "Fetch an http(s) URL of an allow-listed domain.", """
            {"type":"object","additionalProperties":false,"required":["url"],
             "properties":{"url":{"type":"string","minLength":1,"maxLength":8192}}}
            """),
        Define(MemorySave, "Save a memory item in a namespace (org, team:<name>, user, session:<id>).", """
            {"type":"object","additionalProperties":false,"required":["namespace","content"],
             "properties":{"namespace":{"type":"string","minLength":1,"maxLength":300},"content":{"type":"string","minLength":1},
                           "metadata":{"type":"object","description":"Optional JSON object stored with the item."},
                           "expiresAt":{"type":"string","format":"date-time","description":"Optional RFC 3339 time after which the item is never returned."}}}
            """),
        Define(MemorySearch, "Search a memory namespace by meaning and by words (hybrid, the default), by meaning only (vector) or by words only (text).", """
            {"type":"object","additionalProperties":false,"required":["namespace","query"],
             "properties":{"namespace":{"type":"string","minLength":1,"maxLength":300},"query":{"type":"string","minLength":1},
                           "k":{"type":"integer","minimum":1,"maximum":50},
                           "mode":{"type":"string","enum":["vector","text","hybrid"],"description":"How results are ranked; hybrid when absent."}}}
            """),
    }.ToFrozenDictionary(t => t.Name, StringComparer.Ordinal);

    private static ToolDefinition Define(string name, string description, string schema) =>
        new(name, description, JsonDocument.Parse(schema).RootElement.Clone(), ToolKind.Builtin, null, Enabled: true, Version: 0);
}
