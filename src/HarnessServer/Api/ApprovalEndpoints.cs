using HarnessServer.Approvals;
using HarnessServer.Identity;
using Microsoft.AspNetCore.Http.HttpResults;

namespace HarnessServer.Api;

internal static class ApprovalEndpoints
{
    public static IEndpointRouteBuilder MapApprovals(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/approvals").RequireAuthorization(HarnessPolicies.User).WithTags("Approvals");

        // Listing stays the contract's: approvers and admins. Whoever else a rule names lists theirs at /v1/me/approvals.
        group.MapGet("/", ListAsync).WithName("ListApprovals").RequireAuthorization(HarnessPolicies.Approver)
            .WithSummary("Approvals in the caller's scope (what they may decide; admins: the whole tenant), by status.");
        group.MapPost("/{id:guid}/decision", DecideAsync).WithName("DecideApproval")
            .WithSummary("One approver's vote on a pending call: approved at the rule's quorum, rejected on the first rejection.");
        app.MapGet("/v1/me/approvals", MineAsync).RequireAuthorization(HarnessPolicies.User).WithTags("Approvals").WithName("ListMyApprovals")
            .WithSummary("Exactly the approvals the caller may vote on (named by the asking rule, their own under self: allow, or by default as an approver), by status.");
        return app;
    }

    private static async Task<Ok<ApprovalList>> ListAsync(
        CurrentUser user, ApprovalService approvals, string? status, CancellationToken ct)
    {
        var filter = ApprovalService.ParseStatus(status);
        return TypedResults.Ok(new ApprovalList(await approvals.ListAsync(user, filter, decidableOnly: false, ct)));
    }

    private static async Task<Ok<ApprovalList>> MineAsync(
        CurrentUser user, ApprovalService approvals, string? status, CancellationToken ct)
    {
        var filter = ApprovalService.ParseStatus(status);
        return TypedResults.Ok(new ApprovalList(await approvals.ListAsync(user, filter, decidableOnly: true, ct)));
    }

    private static async Task<Ok<ApprovalView>> DecideAsync(
        Guid id, ApprovalDecisionBody body, CurrentUser user, ApprovalService approvals, CancellationToken ct) =>
        TypedResults.Ok(await approvals.DecideAsync(id, user, body, ct));
}

internal sealed record ApprovalList(IReadOnlyList<ApprovalView> Approvals);
