using HarnessServer.Identity;
using HarnessServer.Webhooks;
using Microsoft.AspNetCore.Http.HttpResults;

namespace HarnessServer.Api;

internal static class WebhookEndpoints
{
    public static IEndpointRouteBuilder MapWebhooks(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/admin/webhook").RequireAuthorization(HarnessPolicies.Admin).WithTags("Webhooks");

        group.MapGet("/", async (WebhookAdministration webhooks, CancellationToken ct) => TypedResults.Ok(await webhooks.GetAsync(ct)))
            .WithName("GetWebhook").WithSummary("The tenant's webhook: URL and whether arguments are sent; never the secret.");
        group.MapPut("/", async (WebhookBody body, CurrentUser user, WebhookAdministration webhooks, CancellationToken ct) =>
                TypedResults.Ok(await webhooks.PutAsync(user, body, ct)))
            .WithName("PutWebhook")
            .WithSummary("Set the URL (https; private networks only where configured) and the signing secret; audited without the secret.")
            .ProducesProblem(StatusCodes.Status400BadRequest);
        group.MapDelete("/", DeleteAsync).WithName("DeleteWebhook").WithSummary("Remove the tenant's webhook; audited.");
        group.MapGet("/deliveries", async (string? status, int? limit, WebhookAdministration webhooks, CancellationToken ct) =>
                TypedResults.Ok(await webhooks.DeliveriesAsync(status, limit, ct)))
            .WithName("ListWebhookDeliveries")
            .WithSummary("The delivery log, newest first: each event's status, attempts, and what the receiver answered.");
        return app;
    }

    private static async Task<NoContent> DeleteAsync(CurrentUser user, WebhookAdministration webhooks, CancellationToken ct)
    {
        await webhooks.DeleteAsync(user, ct);
        return TypedResults.NoContent();
    }
}
