using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Http;
using HarnessServer.Identity;
using Microsoft.AspNetCore.Http.HttpResults;

namespace HarnessServer.Memory;

/// <summary>
/// <c>/v1/memory</c>: membership of the namespace first (the store), then the policy on <c>memory.save</c> (writes and
/// deletes) or <c>memory.search</c> (searches and listings) with the namespace as argument, then the operation.
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
            .WithSummary("Store one item in a namespace (org, team:<name>, user, session:<id>); answered like memory.save.");
        group.MapPost("/{namespace}/search", SearchAsync)
            .WithName("SearchMemory")
            .WithSummary("The k (default 5, at most 50) items nearest to the query by cosine similarity; answered like memory.search.");
        group.MapGet("/{namespace}/items", ListAsync)
            .WithName("ListMemory")
            .WithSummary("A namespace's unexpired items, oldest first, paged by the id in 'after'.");
        group.MapDelete("/{namespace}/items/{id:guid}", DeleteAsync)
            .WithName("DeleteMemory")
            .WithSummary("Delete one item; shared items only by their author or an admin.");
        group.MapGet("/reembedding", ReembeddingAsync)
            .RequireAuthorization(HarnessPolicies.Admin)
            .WithName("GetMemoryReembedding")
            .WithSummary("How many of the tenant's items the configured embedding model has embedded.");
        return app;
    }

    private static async Task<Results<Created<MemorySaveResult>, Accepted<MemoryPendingApproval>, ProblemHttpResult>> SaveAsync(
        string @namespace, SaveMemoryRequest request, CurrentUser user, MemoryStore store, IMemoryPolicy policy, CancellationToken cancellationToken)
    {
        var scope = await store.ResolveAsync(user, @namespace, cancellationToken);
        if (await RefusalAsync(policy, user, MemoryStore.SaveTool, scope, cancellationToken) is { } refusal)
        {
            return refusal.AsSave();
        }

        var metadata = request.Metadata switch
        {
            null or { ValueKind: JsonValueKind.Null } => null,
            { ValueKind: JsonValueKind.Object } value => JsonObject.Create(value),
            { } value => throw new HarnessProblemException(StatusCodes.Status400BadRequest, "invalid_metadata",
                $"metadata must be a JSON object; it is {value.ValueKind.ToString().ToLowerInvariant()}."),
        };
        var saved = await store.SaveAsync(user, scope, request.Content, metadata, request.ExpiresAt, cancellationToken);
        return TypedResults.Created((string?)null, saved);
    }

    private static async Task<Results<Ok<MemorySearchResult>, Accepted<MemoryPendingApproval>, ProblemHttpResult>> SearchAsync(
        string @namespace, SearchMemoryRequest request, CurrentUser user, MemoryStore store, IMemoryPolicy policy, CancellationToken cancellationToken)
    {
        var scope = await store.ResolveAsync(user, @namespace, cancellationToken);
        if (await RefusalAsync(policy, user, MemoryStore.SearchTool, scope, cancellationToken) is { } refusal)
        {
            return refusal.AsSearch();
        }

        return TypedResults.Ok(await store.SearchAsync(user, scope, request.Query, request.K ?? MemoryStore.DefaultK, cancellationToken));
    }

    private static async Task<Results<Ok<MemoryPage>, Accepted<MemoryPendingApproval>, ProblemHttpResult>> ListAsync(
        string @namespace, Guid? after, int? limit, CurrentUser user, MemoryStore store, IMemoryPolicy policy, CancellationToken cancellationToken)
    {
        var scope = await store.ResolveAsync(user, @namespace, cancellationToken);
        if (limit is < 1 or > MaxPageSize)
        {
            return Problems.Result(StatusCodes.Status400BadRequest, "invalid_limit", $"limit is {limit}; it must be between 1 and {MaxPageSize}.");
        }

        if (await RefusalAsync(policy, user, MemoryStore.SearchTool, scope, cancellationToken) is { } refusal)
        {
            return refusal.AsList();
        }

        return TypedResults.Ok(await store.ListAsync(user, scope, after, limit ?? DefaultPageSize, cancellationToken));
    }

    private static async Task<Results<NoContent, Accepted<MemoryPendingApproval>, ProblemHttpResult>> DeleteAsync(
        string @namespace, Guid id, CurrentUser user, MemoryStore store, IMemoryPolicy policy, CancellationToken cancellationToken)
    {
        var scope = await store.ResolveAsync(user, @namespace, cancellationToken);
        if (await RefusalAsync(policy, user, MemoryStore.SaveTool, scope, cancellationToken) is { } refusal)
        {
            return refusal.AsDelete();
        }

        await store.DeleteAsync(user, scope, id, cancellationToken);
        return TypedResults.NoContent();
    }

    private static async Task<Ok<MemoryReembeddingProgress>> ReembeddingAsync(CurrentUser user, MemoryStore store, CancellationToken cancellationToken) =>
        TypedResults.Ok(await store.ReembeddingProgressAsync(user.TenantId, cancellationToken));

    private static async Task<PolicyRefusal?> RefusalAsync(
        IMemoryPolicy policy, CurrentUser user, string tool, MemoryScope scope, CancellationToken cancellationToken)
    {
        var outcome = await policy.DecideAsync(user, tool, scope.Namespace.ToString(), cancellationToken);
        return outcome.Effect switch
        {
            MemoryPolicyEffect.Allow => null,
            MemoryPolicyEffect.Deny => new PolicyRefusal(Problems.Result(StatusCodes.Status403Forbidden, "denied",
                outcome.Reason ?? $"Policy denies {tool} on '{scope.Namespace}'.", "Denied by policy"), null),
            _ => new PolicyRefusal(null,
                TypedResults.Accepted((string?)null, new MemoryPendingApproval("pending_approval", null, tool, scope.Namespace.ToString(), outcome.Reason))),
        };
    }

    // A deny is a problem, an ask a 202; each handler's Results<...> names both.
    private sealed record PolicyRefusal(ProblemHttpResult? Denied, Accepted<MemoryPendingApproval>? Pending)
    {
        public Results<Created<MemorySaveResult>, Accepted<MemoryPendingApproval>, ProblemHttpResult> AsSave() =>
            Denied is not null ? Denied : Pending!;

        public Results<Ok<MemorySearchResult>, Accepted<MemoryPendingApproval>, ProblemHttpResult> AsSearch() =>
            Denied is not null ? Denied : Pending!;

        public Results<Ok<MemoryPage>, Accepted<MemoryPendingApproval>, ProblemHttpResult> AsList() =>
            Denied is not null ? Denied : Pending!;

        public Results<NoContent, Accepted<MemoryPendingApproval>, ProblemHttpResult> AsDelete() =>
            Denied is not null ? Denied : Pending!;
    }
}
