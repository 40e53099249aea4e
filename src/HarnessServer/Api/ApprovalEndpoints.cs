using HarnessServer.Approvals;
using HarnessServer.Identity;
using Microsoft.AspNetCore.Http.HttpResults;

namespace HarnessServer.Api;

internal static class ApprovalEndpoints
{
    public static IEndpointRouteBuilder MapApprovals(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/approvals").RequireAuthorization(HarnessPolicies.Approver).WithTags("Approvals");

        group.MapGet("/", ListAsync).WithName("ListApprovals")
            .WithSummary("Approvals in the caller's scope (teams they approve for; admins: the whole tenant), by status.");
        group.MapPost("/{id:guid}/decision", DecideAsync).WithName("DecideApproval")
            .WithSummary("Approve or reject a pending call; the requester can never decide their own.");
        return app;
    }

    private static async Task<Ok<ApprovalList>> ListAsync(
        CurrentUser user, ApprovalService approvals, string? status, CancellationToken ct)
    {
        var filter = ApprovalService.ParseStatus(status);
        return TypedResults.Ok(new ApprovalList(await approvals.ListAsync(user, filter, ct)));
    }

    private static async Task<Ok<ApprovalView>> DecideAsync(
        Guid id, ApprovalDecisionBody body, CurrentUser user, ApprovalService approvals, CancellationToken ct) =>
        TypedResults.Ok(await approvals.DecideAsync(id, user, body, ct));
}

internal sealed record ApprovalList(IReadOnlyList<ApprovalView> Approvals);
