using System.Net;
using System.Net.Http.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Tools;

public sealed class ToolRegistryApiTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private const string Tenant = "tools";

    private HttpClient Admin() => app.ClientFor("root", Tenant, roles: [HarnessRoles.Admin]);

    private static object CommandTool(string name) => new
    {
        name,
        description = "Show the log of a ref",
        kind = "command",
        argv = new[] { "git", "log", "--oneline", "{ref}" },
        schema = new { type = "object", required = new[] { "ref" }, properties = new { @ref = new { type = "string", pattern = "^[A-Za-z0-9_./-]+$" } } },
    };

    [Fact]
    public async Task Lists_the_builtins_of_the_contract()
    {
        using var admin = Admin();

        var list = await (await admin.GetAsync("/v1/admin/tools")).JsonAsync(HttpStatusCode.OK);
        var names = list.GetProperty("tools").EnumerateArray().Select(t => t.GetProperty("name").GetString()).ToList();

        Assert.Equal(["fs.list", "fs.read", "fs.search", "fs.write", "http.fetch", "memory.save", "memory.search", "shell.exec"], names);
    }

    [Fact]
    public async Task Command_tool_is_created_versioned_and_audited()
    {
        using var admin = Admin();

        var created = await (await admin.PostAsJsonAsync("/v1/admin/tools", CommandTool("git.log"))).JsonAsync(HttpStatusCode.Created);
        var replaced = await (await admin.PutAsJsonAsync("/v1/admin/tools/git.log", CommandTool("git.log"))).JsonAsync(HttpStatusCode.OK);

        Assert.Equal(1, created.GetProperty("version").GetInt32());
        Assert.Equal(2, replaced.GetProperty("version").GetInt32());
        using var auditor = app.ClientFor("rev", Tenant, roles: [HarnessRoles.Auditor]);
        var events = await (await auditor.GetAsync("/v1/audit/events?tool=git.log")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(["tool.created", "tool.changed"], events.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("type").GetString()));
    }

    [Fact]
    public async Task Invalid_schema_is_refused_on_save()
    {
        using var admin = Admin();

        var problem = await (await admin.PostAsJsonAsync("/v1/admin/tools", new
        {
            name = "bad.schema", kind = "command", argv = new[] { "true" },
            schema = new { type = "object", properties = new { x = new { type = "strung" } } },
        })).ProblemAsync(HttpStatusCode.BadRequest, "invalid_tool");

        Assert.Contains("not a valid JSON Schema", problem.GetProperty("detail").GetString());
    }

    [Theory]
    [InlineData("git --log={ref}", "mixes text and a placeholder")]
    [InlineData("{ref}", "fixed program name")]
    [InlineData("{other}", "fixed program name")]
    public async Task Argv_placeholders_are_whole_entries_naming_schema_properties(string entry, string expected)
    {
        using var admin = Admin();
        var argv = entry.StartsWith('{') ? new[] { entry } : ["git", entry];

        var problem = await (await admin.PostAsJsonAsync("/v1/admin/tools", new
        {
            name = $"t{Math.Abs(entry.GetHashCode(StringComparison.Ordinal))}", kind = "command", argv,
            schema = new { type = "object", properties = new { @ref = new { type = "string" } } },
        })).ProblemAsync(HttpStatusCode.BadRequest, "invalid_tool");

        Assert.Contains(expected, problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task A_disabled_builtin_rejects_calls()
    {
        using var admin = Admin();
        (await admin.PutAsJsonAsync("/v1/admin/tools/fs.search", new { kind = "builtin", enabled = false })).EnsureSuccessStatusCode();
        var session = (await (await admin.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();

        var call = await (await admin.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.search", arguments = new { pattern = "x" } }))
            .JsonAsync(HttpStatusCode.OK);

        Assert.Equal("rejected", call.GetProperty("status").GetString());
        Assert.Equal("tool_disabled", call.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Members_cannot_change_the_registry()
    {
        using var member = app.ClientFor("someone", Tenant);

        await (await member.PostAsJsonAsync("/v1/admin/tools", CommandTool("git.evil"))).ProblemAsync(HttpStatusCode.Forbidden);
    }
}
