using HarnessServer.Approvals;
using HarnessServer.Identity;
using Microsoft.AspNetCore.Http.HttpResults;

namespace HarnessServer.Api;

internal static class ApprovalEndpoints
{
    public static IEndpointRouteBuilder MapApprovals(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/approvals").RequireAuthorization(HarnessPolicies.User).WithTags("Approvals");

        group.MapGet("/", ListAsync).WithName("ListApprovals")
            .WithSummary("Approvals the caller may decide (their rule names them, or self approval; admins: the whole tenant), by status.");
        group.MapPost("/{id:guid}/decision", DecideAsync).WithName("DecideApproval")
            .WithSummary("One approver's vote on a pending call: approved at the rule's quorum, rejected on the first rejection.");
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
