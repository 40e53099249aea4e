using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Errors;
using HarnessServer.Http;
using HarnessServer.Identity;
using HarnessServer.Memory;
using HarnessServer.Pipeline;
using HarnessServer.Sessions;
using Microsoft.AspNetCore.Http.HttpResults;

namespace HarnessServer.Api;

/// <summary>
/// <c>/v1/memory</c>: membership of the namespace first (the store). A write or a search is then the tool call
/// <c>memory.save</c> or <c>memory.search</c> outside a session, run through the same pipeline as every other call
/// (validated, decided, held for approval on <c>ask</c>, executed, audited; <see cref="MemoryRequests"/>). A listing
/// or a delete is no tool call: it is decided by the same policy on <c>memory.search</c> or <c>memory.save</c> with
/// the namespace as argument, and refused under <c>ask</c>, since there is nothing an approver could be shown.
/// </summary>
internal static class MemoryEndpoints
{
    private const int DefaultPageSize = 50;
    private const int MaxPageSize = 200;

    public static IEndpointRouteBuilder MapMemory(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/memory")
            .RequireAuthorization(HarnessPolicies.User)
            .WithTags("Memory")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound);

        group.MapPost("/{namespace}/items", SaveAsync)
            .WithName("SaveMemory")
            .WithSummary("Store one item in a namespace (org, team:<name>, user, session:<id>); answered like memory.save, or 202 when held for approval.")
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity);
        group.MapPost("/{namespace}/search", SearchAsync)
            .WithName("SearchMemory")
            .WithSummary("The k (default 5, at most 50) best items for the query, ranked by mode: hybrid (default: meaning and words fused), vector (meaning) or text (words); answered like memory.search, or 202 when held for approval.")
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity);
        group.MapGet("/{namespace}/items", ListAsync)
            .WithName("ListMemory")
            .WithSummary("A namespace's unexpired items, oldest first, paged by the id in 'after'.");
        group.MapDelete("/{namespace}/items/{id:guid}", DeleteAsync)
            .WithName("DeleteMemory")
            .WithSummary("Delete one item; shared items only by their author or an admin.");
        group.MapGet("/requests/{id:guid}", GetRequestAsync)
            .WithName("GetMemoryRequest")
            .WithSummary("A write or search that policy held for approval (the 202's Location): its status and, once run, its result.");
        group.MapGet("/reembedding", ReembeddingAsync)
            .RequireAuthorization(HarnessPolicies.Admin)
            .WithName("GetMemoryReembedding")
            .WithSummary("How many of the tenant's items the configured embedding model has embedded.");
        return app;
    }

    private static async Task<Results<Created<MemorySaveResult>, Accepted<MemoryRequestView>, ProblemHttpResult>> SaveAsync(
        string @namespace, SaveMemoryRequest request, CurrentUser user, MemoryStore store, MemoryRequests requests, CancellationToken cancellationToken)
    {
        // Membership of the namespace first, then what could not be stored: neither becomes a recorded call.
        var scope = await store.ResolveAsync(user, @namespace, cancellationToken);
        var metadata = request.Metadata switch
        {
            null or { ValueKind: JsonValueKind.Null } => null,
            { ValueKind: JsonValueKind.Object } value => JsonObject.Create(value),
            { } value => throw new HarnessError(ErrorKind.Invalid, "invalid_metadata",
                $"metadata must be a JSON object; it is {value.ValueKind.ToString().ToLowerInvariant()}."),
        };
        store.CheckSave(request.Content, metadata, request.ExpiresAt);

        var arguments = new JsonObject { ["namespace"] = scope.Namespace.ToString(), ["content"] = request.Content };
        if (metadata is not null)
        {
            arguments["metadata"] = metadata.DeepClone();
        }

        if (request.ExpiresAt is { } expiresAt)
        {
            arguments["expiresAt"] = expiresAt.ToString("O", CultureInfo.InvariantCulture);
        }

        var call = await requests.SubmitAsync(user, MemoryStore.SaveTool, arguments, cancellationToken);
        return call.Status switch
        {
            ToolCallStatus.Succeeded => TypedResults.Created((string?)null, call.Result.Deserialize<MemorySaveResult>(AuditViews.Json)!),
            ToolCallStatus.PendingApproval => await HeldAsync(call, user, requests, cancellationToken),
            _ => Unsuccessful(call, scope),
        };
    }

    private static async Task<Results<Ok<MemorySearchResult>, Accepted<MemoryRequestView>, ProblemHttpResult>> SearchAsync(
        string @namespace, SearchMemoryRequest request, CurrentUser user, MemoryStore store, MemoryRequests requests, CancellationToken cancellationToken)
    {
        var scope = await store.ResolveAsync(user, @namespace, cancellationToken);
        var k = request.K ?? MemoryStore.DefaultK;
        store.CheckSearch(request.Query, k);
        var mode = MemorySearchModes.Parse(request.Mode);

        var arguments = new JsonObject
        {
            ["namespace"] = scope.Namespace.ToString(), ["query"] = request.Query, ["k"] = k, ["mode"] = MemorySearchModes.Name(mode),
        };
        var call = await requests.SubmitAsync(user, MemoryStore.SearchTool, arguments, cancellationToken);
        return call.Status switch
        {
            ToolCallStatus.Succeeded => TypedResults.Ok(call.Result.Deserialize<MemorySearchResult>(AuditViews.Json)!),
            ToolCallStatus.PendingApproval => await HeldAsync(call, user, requests, cancellationToken),
            _ => Unsuccessful(call, scope),
        };
    }

    private static async Task<Results<Ok<MemoryPage>, ProblemHttpResult>> ListAsync(
        string @namespace, Guid? after, int? limit, CurrentUser user, MemoryStore store, IMemoryPolicy policy, CancellationToken cancellationToken)
    {
        var scope = await store.ResolveAsync(user, @namespace, cancellationToken);
        if (limit is < 1 or > MaxPageSize)
        {
            return Problems.Result(StatusCodes.Status400BadRequest, "invalid_limit", $"limit is {limit}; it must be between 1 and {MaxPageSize}.");
        }

        var outcome = await policy.DecideAsync(user, MemoryStore.SearchTool, scope.Namespace.ToString(), cancellationToken);
        if (Denied(outcome, MemoryStore.SearchTool, scope) is { } denied)
        {
            return denied;
        }

        // A listing is no tool call an approver could be shown; the search route can wait for one.
        if (outcome.Effect == MemoryPolicyEffect.Ask)
        {
            return Problems.Result(StatusCodes.Status403Forbidden, "approval_required",
                $"Policy asks for approval before memory.search on '{scope.Namespace}' ({outcome.Reason}); a listing cannot wait for one. " +
                $"POST /v1/memory/{scope.Namespace}/search is held for an approver instead.", "Approval required");
        }

        return TypedResults.Ok(await store.ListAsync(user, scope, after, limit ?? DefaultPageSize, cancellationToken));
    }

    private static async Task<Results<NoContent, ProblemHttpResult>> DeleteAsync(
        string @namespace, Guid id, CurrentUser user, MemoryStore store, IMemoryPolicy policy, CancellationToken cancellationToken)
    {
        var scope = await store.ResolveAsync(user, @namespace, cancellationToken);
        var outcome = await policy.DecideAsync(user, MemoryStore.SaveTool, scope.Namespace.ToString(), cancellationToken);
        if (Denied(outcome, MemoryStore.SaveTool, scope) is { } denied)
        {
            return denied;
        }

        // There is no memory.delete tool to hold for an approver, and an unapproved delete must not happen.
        if (outcome.Effect == MemoryPolicyEffect.Ask)
        {
            return Problems.Result(StatusCodes.Status403Forbidden, "approval_required",
                $"Policy asks for approval before memory.save on '{scope.Namespace}' ({outcome.Reason}), which also governs deletes; " +
                "a delete cannot be held for approval. An administrator can allow memory.save on this namespace for the deleting user or team.",
                "Approval required");
        }

        await store.DeleteAsync(user, scope, id, cancellationToken);
        return TypedResults.NoContent();
    }

    private static async Task<Ok<MemoryRequestView>> GetRequestAsync(Guid id, CurrentUser user, MemoryRequests requests, CancellationToken cancellationToken) =>
        TypedResults.Ok(await requests.FindAsync(user, id, cancellationToken));

    private static async Task<Ok<MemoryReembeddingProgress>> ReembeddingAsync(CurrentUser user, MemoryStore store, CancellationToken cancellationToken) =>
        TypedResults.Ok(await store.ReembeddingProgressAsync(user.TenantId, cancellationToken));

    private static ProblemHttpResult? Denied(MemoryPolicyOutcome outcome, string tool, MemoryScope scope) =>
        outcome.Effect == MemoryPolicyEffect.Deny
            ? Problems.Result(StatusCodes.Status403Forbidden, "denied", outcome.Reason ?? $"Policy denies {tool} on '{scope.Namespace}'.", "Denied by policy")
            : null;

    private static async Task<Accepted<MemoryRequestView>> HeldAsync(
        ToolCallResponse submitted, CurrentUser user, MemoryRequests requests, CancellationToken cancellationToken) =>
        TypedResults.Accepted(MemoryRequests.Location(submitted.Id), await requests.FindAsync(user, submitted.Id, cancellationToken));

    // The pipeline decided the call and did not run it (denied, rejected), or ran it and it failed.
    private static ProblemHttpResult Unsuccessful(ToolCallResponse call, MemoryScope scope) => call.Status switch
    {
        ToolCallStatus.Denied => Problems.Result(StatusCodes.Status403Forbidden, "denied",
            call.Decision?.Reason ?? call.Error?.Message ?? $"Policy denies {call.Tool} on '{scope.Namespace}'.", "Denied by policy"),
        ToolCallStatus.Rejected => Problems.Result(StatusCodes.Status400BadRequest, call.Error?.Code ?? "rejected", call.Error?.Message ?? "The request was rejected."),
        _ => Problems.Result(StatusCodes.Status422UnprocessableEntity, call.Error?.Code ?? "failed", call.Error?.Message ?? "The request failed."),
    };
}
