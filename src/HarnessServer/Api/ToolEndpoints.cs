using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using HarnessServer.Audit;
using HarnessServer.Errors;
using HarnessServer.Http;
using HarnessServer.Identity;
using HarnessServer.Tools;
using Microsoft.AspNetCore.Http.HttpResults;
using Npgsql;

namespace HarnessServer.Api;

internal static class ToolEndpoints
{
    public static IEndpointRouteBuilder MapTools(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/admin/tools").RequireAuthorization(HarnessPolicies.Admin).WithTags("Tools");
        group.MapGet("/", ListAsync).WithName("ListTools").WithSummary("The tenant's registry: built-ins and admin-defined tools.");
        group.MapGet("/{name}", GetAsync).WithName("GetTool");
        group.MapPost("/", CreateAsync).WithName("CreateTool").WithSummary("Define a command tool (argv template, JSON Schema).");
        group.MapPut("/{name}", ReplaceAsync).WithName("ReplaceTool")
            .WithSummary("Replace a tool; for a built-in only its description and enabled flag can change.");
        group.MapDelete("/{name}", DeleteAsync).WithName("DeleteTool");

        var fetch = app.MapGroup("/v1/admin/http-fetch/domains").RequireAuthorization(HarnessPolicies.Admin).WithTags("Tools");
        fetch.MapGet("/", async (CurrentUser user, HttpFetchAllowList allowList, CancellationToken ct) => TypedResults.Ok(await allowList.GetAsync(user.TenantId, ct)))
            .WithName("GetHttpFetchDomains")
            .WithSummary("The domains http.fetch may reach: those the tenant's admins set, those the operator configured, and both.");
        fetch.MapPut("/", async (HttpFetchDomainsBody body, CurrentUser user, HttpFetchAllowList allowList, AuditChain audit, CancellationToken ct) =>
                TypedResults.Ok(await allowList.ReplaceAsync(user, body, audit, ct)))
            .WithName("PutHttpFetchDomains")
            .WithSummary("Replace the admins' allow-list ('example.com', '*.example.com'); validated, audited with the list before and after.")
            .ProducesProblem(StatusCodes.Status400BadRequest);
        return app;
    }

    private static async Task<Ok<ToolList>> ListAsync(CurrentUser user, ToolRegistry registry, CancellationToken ct) =>
        TypedResults.Ok(new ToolList((await registry.ListAsync(user.TenantId, ct)).OrderBy(t => t.Name, StringComparer.Ordinal).Select(ToolView.Of).ToList()));

    private static async Task<Results<Ok<ToolView>, ProblemHttpResult>> GetAsync(string name, CurrentUser user, ToolRegistry registry, CancellationToken ct) =>
        await registry.FindAsync(user.TenantId, name, ct) is { } tool
            ? TypedResults.Ok(ToolView.Of(tool))
            : Problems.Result(StatusCodes.Status404NotFound, "tool_not_found", $"No tool named '{name}' exists in this tenant's registry.");

    private static async Task<Created<ToolView>> CreateAsync(ToolBody body, CurrentUser user, ToolAdministration tools, CancellationToken ct)
    {
        var stored = await tools.CreateAsync(user, body, ct);
        return TypedResults.Created($"/v1/admin/tools/{stored.Name}", stored);
    }

    private static async Task<Ok<ToolView>> ReplaceAsync(string name, ToolBody body, CurrentUser user, ToolAdministration tools, CancellationToken ct) =>
        TypedResults.Ok(await tools.ReplaceAsync(user, name, body, ct));

    private static async Task<NoContent> DeleteAsync(string name, CurrentUser user, ToolAdministration tools, CancellationToken ct)
    {
        await tools.DeleteAsync(user, name, ct);
        return TypedResults.NoContent();
    }
}

internal sealed record ToolList(IReadOnlyList<ToolView> Tools);
