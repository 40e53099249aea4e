using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Approvals;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Pipeline;
using HarnessServer.Policies;
using HarnessServer.Sessions;
using HarnessServer.Tools;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace HarnessServer.Mcp;

/// <summary>
/// <c>tools/list</c> and <c>tools/call</c> of <c>/mcp</c>, for the token's user. Listing offers what an agent turn
/// offers (enabled tools the effective matrix does not deny outright); a call enters <see cref="ToolCallPipeline"/>
/// exactly as <c>POST /v1/sessions/{id}/tool-calls</c> does, so it is validated, decided, held, sandboxed and audited
/// the same way. A call the policy answers with <c>ask</c> stays open until it is decided: the client hears
/// <c>notifications/progress</c> while it waits and then gets the call's result, or a tool error naming who rejected
/// it and why, or that it expired. Every refusal is a tool error (<c>isError</c>) carrying the problem code.
/// </summary>
internal sealed class McpToolCalls(
    IHttpContextAccessor http,
    ToolRegistry registry,
    PolicyService policies,
    ToolCallPipeline pipeline,
    SessionService sessions,
    SessionEvents events,
    HarnessDbContext db,
    IOptions<McpOptions> options,
    ILogger<McpToolCalls> logger)
{
    /// <summary>Names the harness session (and so the workspace) an MCP call runs in.</summary>
    public const string SessionHeader = "Harness-Session";

    /// <summary>The same in a request's or a result's <c>_meta</c>.</summary>
    public const string SessionMeta = "harness/sessionId";

    public async ValueTask<ListToolsResult> ListAsync(RequestContext<ListToolsRequestParams> request, CancellationToken cancellationToken)
    {
        var caller = Caller();
        var resolver = await policies.ResolverForAsync(caller, cancellationToken);
        var listed = new List<Tool>();
        foreach (var tool in (await registry.ListAsync(caller.TenantId, cancellationToken))
                     .Where(t => t.Enabled && resolver.IsOffered(t.Name)).OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            try
            {
                listed.Add(new Tool { Name = tool.Name, Description = tool.Description, InputSchema = tool.Schema });
            }
            catch (ArgumentException e)
            {
                // MCP wants an object schema; a tool whose schema is something else cannot be described to a client.
                logger.LogWarning("Tool {Tool} is not listed on /mcp: {Reason}", tool.Name, e.Message);
            }
        }

        return new ListToolsResult { Tools = listed };
    }

    public async ValueTask<CallToolResult> CallAsync(RequestContext<CallToolRequestParams> request, CancellationToken cancellationToken)
    {
        var caller = Caller();
        var call = request.Params ?? throw new McpProtocolException("tools/call needs params.", McpErrorCode.InvalidParams);
        Guid? session = null;
        try
        {
            session = await SessionOfAsync(caller, call, cancellationToken);
            var arguments = JsonSerializer.SerializeToElement(call.Arguments ?? new Dictionary<string, JsonElement>());
            var response = await pipeline.RunAsync(new ToolCallRequest(caller, session, call.Name, arguments), cancellationToken);
            if (response is { Status: ToolCallStatus.PendingApproval, ApprovalId: { } approval })
            {
                return await AwaitDecisionAsync(request, session.Value, response.Id, approval, cancellationToken);
            }

            return Outcome(session.Value, response.Id, response.Status, response.ApprovalId, response.AuditSeq, response.Result,
                response.Error is { } error ? (error.Code, error.Message, JsonSerializer.SerializeToNode(error, JsonSerializerOptions.Web))
                    : response.Status == ToolCallStatus.Denied ? Denial(response.Decision) : null);
        }
        catch (HarnessError refused)
        {
            var details = new JsonObject { ["code"] = refused.Code, ["message"] = refused.Message };
            foreach (var (key, value) in refused.Extensions ?? new Dictionary<string, object?>())
            {
                details[key] = JsonSerializer.SerializeToNode(value, JsonSerializerOptions.Web);
            }

            return Failure(session, null, null, null, refused.Code, refused.Message, details);
        }
    }

    // The header wins over _meta; without either, the first call gets a new session, named in the result's _meta.
    private async Task<Guid> SessionOfAsync(CurrentUser caller, CallToolRequestParams call, CancellationToken cancellationToken)
    {
        var named = http.HttpContext?.Request.Headers[SessionHeader].ToString() is { Length: > 0 } header
            ? header
            : call.Meta?[SessionMeta] is JsonValue value && value.TryGetValue<string>(out var meta) ? meta : null;
        if (named is null)
        {
            return (await sessions.CreateAsync(caller, cancellationToken)).Id;
        }

        // Another tenant's or user's session is refused by the pipeline as one that does not exist.
        return Guid.TryParse(named, out var id)
            ? id
            : throw new HarnessError(ErrorKind.Invalid, "invalid_session", $"'{SessionHeader}' must be a session id (a UUID).");
    }

    private async Task<CallToolResult> AwaitDecisionAsync(
        RequestContext<CallToolRequestParams> request, Guid session, Guid callId, Guid approval, CancellationToken cancellationToken)
    {
        // Subscribed before each read of the call, so a decision between the two still wakes the wait.
        using var subscription = events.Subscribe(session);
        var progress = 0;
        while (true)
        {
            var call = await db.ToolCalls.AsNoTracking().FirstAsync(c => c.Id == callId, cancellationToken);
            if (call.Status is not (ToolCallStatus.PendingApproval or ToolCallStatus.Approved or ToolCallStatus.Running))
            {
                return await DecidedAsync(session, call, cancellationToken);
            }

            if (request.Params?.ProgressToken is { } token)
            {
                await request.Server.NotifyProgressAsync(token, new ProgressNotificationValue
                {
                    Progress = ++progress,
                    Message = call.Status == ToolCallStatus.PendingApproval
                        ? $"Waiting for approval {approval} of {call.Tool} (call {callId}, session {session}): another person decides it with POST /v1/approvals/{approval}/decision."
                        : $"Approved; {call.Tool} is running (call {callId}, session {session}).",
                }, cancellationToken: cancellationToken);
            }

            await ChangeOfAsync(subscription, callId, cancellationToken);
        }
    }

    // Returns when the call changes or the progress interval passes, whichever is first.
    private async Task ChangeOfAsync(SessionEvents.Subscription subscription, Guid callId, CancellationToken cancellationToken)
    {
        using var interval = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        interval.CancelAfter(options.Value.ProgressInterval);
        try
        {
            while (await subscription.Reader.WaitToReadAsync(interval.Token))
            {
                while (subscription.Reader.TryRead(out var change))
                {
                    if (change.Id == callId)
                    {
                        return;
                    }
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // The interval passed: report progress and look again.
        }
    }

    private async Task<CallToolResult> DecidedAsync(Guid session, ToolCall call, CancellationToken cancellationToken)
    {
        var result = call.Result is { } stored ? JsonNode.Parse(stored.RootElement.GetRawText()) : null;
        if (call.Status is ToolCallStatus.Denied or ToolCallStatus.Expired)
        {
            var approval = await db.Approvals.AsNoTracking().FirstAsync(a => a.Id == call.ApprovalId, cancellationToken);
            var why = call.Status == ToolCallStatus.Denied
                ? ("approval_rejected", $"Rejected by {approval.DecidedByName ?? approval.DecidedBy} ({approval.DecidedBy}): {(string.IsNullOrWhiteSpace(approval.Comment) ? "no reason given" : approval.Comment)}. The call did not run.")
                : ("approval_expired", $"Approval {approval.Id} expired at {approval.ExpiresAt:O} without a decision. The call did not run.");
            return Failure(session, call.Id, call.Status, call.AuditSeq, why.Item1, why.Item2, new JsonObject
            {
                ["code"] = why.Item1,
                ["message"] = why.Item2,
                ["approvalId"] = approval.Id.ToString(),
                ["decidedBy"] = approval.DecidedBy,
                ["comment"] = approval.Comment,
            });
        }

        var error = call.Error?.RootElement is { ValueKind: JsonValueKind.Object } e ? JsonNode.Parse(e.GetRawText()) : null;
        return Outcome(session, call.Id, call.Status, call.ApprovalId, call.AuditSeq, result,
            error is null ? null : ((string?)error["code"] ?? "failed", (string?)error["message"] ?? "The call failed.", error));
    }

    private static (string Code, string Message, JsonNode? Details) Denial(DecisionView? decision)
    {
        var message = $"Denied by the {decision?.Level ?? "org"} policy{(decision?.Source is { } source ? $" ({source})" : "")}: {decision?.Reason ?? "no rule allows it"}.";
        return ("denied", message, new JsonObject
        {
            ["code"] = "denied",
            ["message"] = message,
            ["decision"] = JsonSerializer.SerializeToNode(decision, JsonSerializerOptions.Web),
        });
    }

    private CallToolResult Outcome(
        Guid session, Guid callId, ToolCallStatus status, Guid? approval, long? auditSeq, JsonNode? result,
        (string Code, string Message, JsonNode? Details)? failure)
    {
        if (status != ToolCallStatus.Succeeded)
        {
            var (code, message, details) = failure ?? ("failed", $"The call ended {Status(status)}.", null);
            return Failure(session, callId, status, auditSeq, code, message, details, approval);
        }

        return new CallToolResult
        {
            Content = [new TextContentBlock { Text = result?.ToJsonString() ?? "null" }],
            StructuredContent = result is JsonObject ? JsonSerializer.SerializeToElement(result) : null,
            IsError = false,
            Meta = Meta(session, callId, status, auditSeq, approval),
        };
    }

    private static CallToolResult Failure(
        Guid? session, Guid? callId, ToolCallStatus? status, long? auditSeq, string code, string message, JsonNode? details, Guid? approval = null) => new()
    {
        Content = [new TextContentBlock { Text = $"{code}: {message}" }],
        StructuredContent = JsonSerializer.SerializeToElement(details ?? new JsonObject { ["code"] = code, ["message"] = message }),
        IsError = true,
        Meta = Meta(session, callId, status, auditSeq, approval),
    };

    private static JsonObject Meta(Guid? session, Guid? callId, ToolCallStatus? status, long? auditSeq, Guid? approval)
    {
        var meta = new JsonObject();
        if (session is { } s)
        {
            meta[SessionMeta] = s.ToString();
        }

        if (callId is { } c)
        {
            meta["harness/callId"] = c.ToString();
        }

        if (status is { } st)
        {
            meta["harness/status"] = Status(st);
        }

        if (approval is { } a)
        {
            meta["harness/approvalId"] = a.ToString();
        }

        if (auditSeq is { } seq)
        {
            meta["harness/auditSeq"] = seq;
        }

        return meta;
    }

    private static string Status(ToolCallStatus status) => JsonNamingPolicy.SnakeCaseLower.ConvertName(status.ToString());

    private CurrentUser Caller() =>
        http.HttpContext?.GetCurrentUser() ?? throw new InvalidOperationException("/mcp ran without an HTTP request.");
}
