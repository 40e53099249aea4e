using System.Text;
using System.Text.Json;
using HarnessServer.Approvals;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Http;
using HarnessServer.Identity;
using HarnessServer.Policies;
using HarnessServer.Tools;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;

namespace HarnessServer.Api;

internal static class PolicyEndpoints
{
    public static IEndpointRouteBuilder MapPolicies(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/me/permissions", MyPermissionsAsync)
            .RequireAuthorization(HarnessPolicies.User).WithTags("Policies").WithName("GetMyPermissions")
            .WithSummary("The caller's effective permission matrix, each tool with the rules that can decide it.");

        app.MapGet("/v1/admin/permissions/{user}", PermissionsOfAsync)
            .RequireAuthorization(HarnessPolicies.PermissionReader).WithTags("Policies").WithName("GetUserPermissions")
            .WithSummary("A user's effective matrix for the given teams (comma-separated), with explanations.");

        var admin = app.MapGroup("/v1/admin/policies").RequireAuthorization(HarnessPolicies.Admin).WithTags("Policies");
        admin.MapGet("/org", (HttpContext http, HarnessDbContext db, CurrentUser user, CancellationToken ct) =>
            GetLevelAsync(http, db, user, PolicyLevelKey.Org, ct)).WithName("GetOrgPolicy").AsPolicyText()
            .WithSummary("The org level as stored, its version as the ETag.");
        admin.MapGet("/teams/{team}", (string team, HttpContext http, HarnessDbContext db, CurrentUser user, CancellationToken ct) =>
            GetLevelAsync(http, db, user, PolicyLevelKey.Team(team), ct)).WithName("GetTeamPolicy").AsPolicyText()
            .WithSummary("A team's level as stored, its version as the ETag.");
        admin.MapGet("/users/{userId}", (string userId, HttpContext http, HarnessDbContext db, CurrentUser user, CancellationToken ct) =>
            GetLevelAsync(http, db, user, PolicyLevelKey.User(userId), ct)).WithName("GetUserPolicy").AsPolicyText()
            .WithSummary("A user's level as stored, its version as the ETag.");
        admin.MapPut("/org", (HttpContext http, PolicyService policies, AuditChain audit, CurrentUser user, TimeProvider time, CancellationToken ct) =>
            PutLevelAsync(http, policies, audit, user, time, PolicyLevelKey.Org, ct)).WithName("PutOrgPolicy").AsPolicyReplacement()
            .WithSummary("Replace the org level (YAML or JSON); 400 with the error's location, 412 on a stale If-Match.");
        admin.MapPut("/teams/{team}", (string team, HttpContext http, PolicyService policies, AuditChain audit, CurrentUser user, TimeProvider time, CancellationToken ct) =>
            PutLevelAsync(http, policies, audit, user, time, PolicyLevelKey.Team(team), ct)).WithName("PutTeamPolicy").AsPolicyReplacement()
            .WithSummary("Replace a team's level (YAML or JSON); 400 with the error's location, 412 on a stale If-Match.");
        admin.MapPut("/users/{userId}", (string userId, HttpContext http, PolicyService policies, AuditChain audit, CurrentUser user, TimeProvider time, CancellationToken ct) =>
            PutLevelAsync(http, policies, audit, user, time, PolicyLevelKey.User(userId), ct)).WithName("PutUserPolicy").AsPolicyReplacement()
            .WithSummary("Replace a user's level (YAML or JSON); 400 with the error's location, 412 on a stale If-Match.");
        admin.MapGet("/history", HistoryAsync).WithName("GetPolicyHistory")
            .WithSummary("Every stored version of a level (?level=org|team:x|user:y): who, when, origin, and the line diff from the previous.");

        app.MapPost("/v1/admin/policies/simulate", SimulateAsync)
            .RequireAuthorization(HarnessPolicies.PermissionReader).WithTags("Policies").WithName("SimulatePolicy")
            .WithSummary("What a call would get for a user in some teams, and why, without running anything.");
        return app;
    }

    private static readonly string[] PolicyMediaTypes = ["application/yaml", "application/json"];

    // A level's body is the policy file as stored (YAML or JSON text), not a JSON value, and its version travels as
    // the ETag: the document says so, so that a client can send If-Match and read the ETag back.
    private static RouteHandlerBuilder AsPolicyText(this RouteHandlerBuilder route) => route
        .Produces<string>(StatusCodes.Status200OK, PolicyMediaTypes[0], PolicyMediaTypes[1..])
        .ProducesProblem(StatusCodes.Status404NotFound)
        .AddOpenApiOperationTransformer((operation, _, _) =>
        {
            PolicyFile(operation.Responses!["200"].Content);
            VersionHeader(operation.Responses!["200"]);
            return Task.CompletedTask;
        });

    private static RouteHandlerBuilder AsPolicyReplacement(this RouteHandlerBuilder route) => route
        .Accepts<string>(PolicyMediaTypes[0], PolicyMediaTypes[1..])
        .ProducesProblem(StatusCodes.Status412PreconditionFailed)
        .AddOpenApiOperationTransformer((operation, _, _) =>
        {
            operation.Parameters ??= [];
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = "If-Match",
                In = ParameterLocation.Header,
                Required = false,
                Description = "The ETag of the version this replaces (as GET returned it); 412 when another version was stored since.",
                Schema = new OpenApiSchema { Type = JsonSchemaType.String },
            });
            PolicyFile(operation.RequestBody?.Content);
            VersionHeader(operation.Responses!["200"]);
            return Task.CompletedTask;
        });

    // The file itself: YAML text, or a JSON object (not a JSON string).
    private static void PolicyFile(IDictionary<string, OpenApiMediaType>? content)
    {
        if (content?.TryGetValue("application/json", out var json) == true)
        {
            json.Schema = new OpenApiSchema { Type = JsonSchemaType.Object, Description = "The policy file as JSON." };
        }

        if (content?.TryGetValue("application/yaml", out var yaml) == true)
        {
            yaml.Schema = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The policy file as YAML." };
        }
    }

    private static void VersionHeader(IOpenApiResponse response)
    {
        if (response is OpenApiResponse concrete)
        {
            concrete.Headers ??= new Dictionary<string, IOpenApiHeader>(StringComparer.Ordinal);
            concrete.Headers["ETag"] = new OpenApiHeader
            {
                Description = "The stored version, quoted: send it back as If-Match.",
                Schema = new OpenApiSchema { Type = JsonSchemaType.String },
            };
        }
    }

    private static async Task<Ok<PermissionMatrix>> MyPermissionsAsync(
        CurrentUser user, PolicyService policies, ToolRegistry registry, IOptions<ApprovalOptions> approvals, CancellationToken ct)
    {
        var resolver = await policies.ResolverForAsync(user, ct);
        var tools = await registry.ListAsync(user.TenantId, ct);
        return TypedResults.Ok(resolver.Matrix(tools.Select(t => t.Name).Order(StringComparer.Ordinal), approvals.Value.Expiry));
    }

    private static async Task<Ok<PermissionMatrix>> PermissionsOfAsync(
        string user, string? teams, CurrentUser caller, PolicyService policies, ToolRegistry registry, IOptions<ApprovalOptions> approvals, CancellationToken ct)
    {
        var resolver = await policies.ResolverForAsync(caller.TenantId, user, SplitTeams(teams), ct);
        var tools = await registry.ListAsync(caller.TenantId, ct);
        return TypedResults.Ok(resolver.Matrix(tools.Select(t => t.Name).Order(StringComparer.Ordinal), approvals.Value.Expiry));
    }

    private static async Task<Ok<SimulationResult>> SimulateAsync(
        SimulationRequest request, CurrentUser caller, PolicyService policies, IOptions<ApprovalOptions> approvals, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(request.User) || string.IsNullOrWhiteSpace(request.Tool))
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_simulation", "Both 'user' and 'tool' are required.");
        }

        var resolver = await policies.ResolverForAsync(caller.TenantId, request.User, request.Teams ?? [], ct);
        var arguments = request.Arguments is { ValueKind: JsonValueKind.Object } a ? ToolArguments.Flatten(a) : [];
        var decision = resolver.Decide(request.Tool, arguments, request.Workspace ?? Sandbox.Workspace.MountPoint);
        return TypedResults.Ok(new SimulationResult(
            decision.Effect.ToString().ToLowerInvariant(),
            decision.Level.ToString().ToLowerInvariant(),
            decision.Source,
            decision.Index,
            decision.Explanation,
            decision.DecidedBy.Locked,
            decision.SimpleCommand,
            decision.Unclassifiable,
            ApprovalRequirements.Of(decision.Routing, approvals.Value.Expiry)));
    }

    private static async Task<IResult> GetLevelAsync(
        HttpContext http, HarnessDbContext db, CurrentUser user, PolicyLevelKey level, CancellationToken ct)
    {
        var current = await PolicyService.CurrentAsync(db, level, ct);
        if (current is null)
        {
            return Problems.Result(StatusCodes.Status404NotFound, "policy_not_found", $"No {level} policy is stored for tenant {user.TenantId}.");
        }

        http.Response.Headers.ETag = $"\"{current.Version}\"";
        var json = current.Content.TrimStart().StartsWith('{');
        return TypedResults.Text(current.Content, json ? "application/json" : "application/yaml", Encoding.UTF8);
    }

    private static async Task<Ok<PolicyVersionView>> PutLevelAsync(
        HttpContext http, PolicyService policies, AuditChain audit, CurrentUser user, TimeProvider time, PolicyLevelKey level, CancellationToken ct)
    {
        if (level.Name is { } name && (name.Length == 0 || name.Length > ColumnLimits.Identifier))
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_level", "The team or user name must have 1 to 200 characters.");
        }

        int? expected = null;
        var ifMatch = http.Request.Headers.IfMatch.ToString();
        if (ifMatch.Length > 0)
        {
            expected = int.TryParse(ifMatch.Trim().Trim('"').TrimStart('W', '/').Trim('"'), out var v)
                ? v
                : throw new HarnessError(ErrorKind.Invalid, "invalid_if_match",
                    $"If-Match must be the ETag of the level's current version (as GET returns it, e.g. \"3\"), not '{ifMatch}'.");
        }

        using var reader = new StreamReader(http.Request.Body, Encoding.UTF8);
        var content = await reader.ReadToEndAsync(ct);
        if (string.IsNullOrWhiteSpace(content))
        {
            throw new HarnessError(ErrorKind.Invalid, "empty_policy", "The body must be a YAML or JSON policy document.");
        }

        var stored = await policies.StoreAsync(audit, user.TenantId, level, content, "api",
            new AuditActor(user.UserId, user.DisplayName), expected, time, ct);
        http.Response.Headers.ETag = $"\"{stored.Version}\"";
        return TypedResults.Ok(PolicyVersionView.Of(stored, null));
    }

    private static async Task<Ok<PolicyHistory>> HistoryAsync(string? level, HarnessDbContext db, CancellationToken ct)
    {
        PolicyLevelKey key;
        try
        {
            key = PolicyLevelKey.Parse(level ?? "org");
        }
        catch (FormatException e)
        {
            throw new HarnessError(ErrorKind.Invalid, "invalid_level", e.Message);
        }

        var name = key.ToString();
        var versions = await db.PolicyVersions.AsNoTracking().Where(p => p.LevelKey == name).OrderBy(p => p.Version).ToListAsync(ct);
        var views = versions.Select((v, i) => PolicyVersionView.Of(v, LineDiff.Unified(i == 0 ? "" : versions[i - 1].Content, v.Content))).ToList();
        return TypedResults.Ok(new PolicyHistory(name, views));
    }

    private static string[] SplitTeams(string? teams) =>
        string.IsNullOrWhiteSpace(teams) ? [] : teams.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}

internal sealed record SimulationRequest(string User, IReadOnlyList<string>? Teams, string Tool, JsonElement? Arguments, string? Workspace);

internal sealed record SimulationResult(
    string Effect, string Level, string Source, int? Index, string Reason, bool Locked, string? SimpleCommand, bool Unclassifiable,
    ApprovalRequirements? Approval);

internal sealed record PolicyVersionView(string Level, int Version, string Origin, string ChangedBy, string ChangedByName, DateTimeOffset ChangedAt, string ContentHash, string? Diff)
{
    public static PolicyVersionView Of(PolicyVersion v, string? diff) =>
        new(v.LevelKey, v.Version, v.Origin, v.ChangedBy, v.ChangedByName, v.ChangedAt, v.ContentHash, diff);
}

internal sealed record PolicyHistory(string Level, IReadOnlyList<PolicyVersionView> Versions);
