using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Webhooks;

namespace HarnessServer.Approvals;

/// <summary>
/// An approval as the tenant's webhook reports it (<see cref="WebhookOutbox"/>): who asked for which tool, why, who
/// may decide and by when, and once decided the outcome and who voted for it. The arguments, the preview and the
/// reason (which can quote them) go only to tenants that opted in.
/// </summary>
internal static class ApprovalWebhook
{
    /// <summary>The outbox row of <paramref name="type"/> for <paramref name="approval"/>, committing with an audit append.</summary>
    public static AuditCommand Enqueue(string type, Approval approval, JsonElement arguments, DateTimeOffset at)
    {
        var (view, details) = Of(approval, arguments, []);
        return WebhookOutbox.Enqueue(approval.TenantId, type, view, details, at);
    }

    /// <summary>The same from a unit of work whose changes are EF's.</summary>
    public static Task EnqueueAsync(
        AuditUnitOfWork unit, string type, Approval approval, JsonElement arguments, IEnumerable<string> voters, DateTimeOffset at, CancellationToken ct)
    {
        var (view, details) = Of(approval, arguments, voters);
        return WebhookOutbox.EnqueueAsync(unit, type, view, details, at, ct);
    }

    private static (JsonObject View, JsonObject Details) Of(Approval approval, JsonElement arguments, IEnumerable<string> voters)
    {
        var view = new JsonObject
        {
            ["id"] = approval.Id.ToString(),
            ["callId"] = approval.ToolCallId.ToString(),
            ["sessionId"] = approval.SessionId?.ToString(),
            ["tool"] = approval.Tool,
            ["requestedBy"] = approval.RequestedBy,
            ["status"] = approval.Status.ToString().ToLowerInvariant(),
            ["approvers"] = new JsonArray([.. approval.Approvers.Select(a => (JsonNode?)JsonValue.Create(a))]),
            ["quorum"] = approval.Quorum,
            ["self"] = approval.SelfApproval ? "allow" : "deny",
            ["expiresAt"] = approval.ExpiresAt.ToUniversalTime().ToString("O", System.Globalization.CultureInfo.InvariantCulture),
        };
        if (approval.Status != ApprovalStatus.Pending)
        {
            view["decidedBy"] = approval.DecidedBy;
            view["approvals"] = new JsonArray([.. voters.Select(v => (JsonNode?)JsonValue.Create(v))]);
        }

        // The reason goes with the arguments: for a shell line it quotes the simple command that asked.
        var details = new JsonObject { ["arguments"] = JsonNode.Parse(arguments.GetRawText()), ["reason"] = approval.Reason };
        if (approval.Preview is { } preview)
        {
            details["preview"] = JsonNode.Parse(preview.RootElement.GetRawText());
        }

        return (view, details);
    }
}
