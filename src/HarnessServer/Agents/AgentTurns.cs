using System.ClientModel;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Errors;
using HarnessServer.Identity;
using HarnessServer.Pipeline;
using HarnessServer.Policies;
using HarnessServer.Sessions;
using HarnessServer.Tenancy;
using HarnessServer.Tools;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Microsoft.SemanticKernel;

namespace HarnessServer.Agents;

/// <summary>What a turn answers: its status, the model's reply once completed, and its tool calls so far.</summary>
internal sealed record TurnResult(Guid TurnId, TurnStatus Status, string? Reply, IReadOnlyList<JsonElement> ToolCalls, string? Error);

/// <summary>
/// Runs agent turns: the session's history goes to the model, every call the model proposes is invoked as a Semantic
/// Kernel function whose <see cref="PipelineFunctionFilter"/> hands it to <see cref="ToolCallPipeline"/> (schema,
/// policy, approval, sandbox, audit), and the pipeline's response goes back to the model as the call's result, until
/// the model answers without a call or <see cref="AgentOptions.MaxIterations"/> rounds ran.
/// Every step is stored before the next starts: a tool message marked <c>started</c> before its call runs, its
/// result after. So a turn continues from its last stored step after approval, pause or a crash, and a call that
/// was running when the process died is reported to the model as interrupted, never run a second time.
/// </summary>
internal sealed class AgentTurns(
    HarnessDbContext db,
    TenantContext tenant,
    Kernel kernel,
    ToolRegistry registry,
    PolicyService policies,
    AgentModel model,
    ContextWindow context,
    MemoryRecall memory,
    TurnLock locks,
    AuditChain audit,
    IOptions<AgentOptions> options,
    IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json,
    TimeProvider time,
    ILogger<AgentTurns> logger)
{
    /// <summary>How long a new message waits for a session's turn lock held by something other than an open turn.</summary>
    private static readonly TimeSpan TurnLockWait = TimeSpan.FromSeconds(10);

    private const string Started = "started";
    private const string Interrupted = "interrupted";

    /// <summary><c>POST /v1/sessions/{id}/messages</c>: starts a turn with the user's message and runs it.</summary>
    public async Task<TurnResult> SendAsync(CurrentUser user, Guid sessionId, string content, CancellationToken cancellationToken)
    {
        if (!model.IsConfigured)
        {
            throw new HarnessError(ErrorKind.Unavailable, "model_not_configured",
                "No model is configured: set Harness:Model:Endpoint (and :ApiKey, :Id) to an OpenAI-compatible endpoint.");
        }

        tenant.Set(user.TenantId);
        var session = await db.Sessions.AsNoTracking().FirstOrDefaultAsync(s => s.Id == sessionId, cancellationToken);
        if (session is null || session.OwnerUserId != user.UserId)
        {
            throw new HarnessError(ErrorKind.NotFound, "session_not_found", $"Session {sessionId} does not exist.");
        }

        if (session.Status == SessionStatus.Paused)
        {
            throw new HarnessError(ErrorKind.Conflict, "session_paused",
                $"Session {sessionId} is paused; resume it before sending messages.");
        }

        var held = await locks.TryAcquireAsync(sessionId, cancellationToken);
        if (held is null)
        {
            // With no open turn, the holder lets go soon: a recovery pass (of any process) looking at the turn that
            // just ended, or a rollback. A client that waited for the last reply must not see 409 for that.
            if (await OpenTurnAsync(sessionId, cancellationToken) is { } running)
            {
                throw TurnInProgress(sessionId, JsonNamingPolicy.SnakeCaseLower.ConvertName(running.ToString()));
            }

            held = await locks.AcquireAsync(sessionId, TurnLockWait, cancellationToken) ?? throw TurnInProgress(sessionId, "running");
        }

        await using var _ = held;
        if (await OpenTurnAsync(sessionId, cancellationToken) is { } open)
        {
            throw TurnInProgress(sessionId, JsonNamingPolicy.SnakeCaseLower.ConvertName(open.ToString()));
        }

        var now = time.GetUtcNow();
        var turn = new AgentTurn
        {
            Id = Guid.CreateVersion7(),
            TenantId = user.TenantId,
            SessionId = sessionId,
            UserId = user.UserId,
            UserName = user.DisplayName,
            UserTeams = [.. user.Teams],
            UserRoles = [.. user.Roles],
            Status = TurnStatus.Running,
            LastStep = "user_message",
            CreatedAt = now,
            UpdatedAt = now,
        };
        // The turn starts only with its audit event (fail closed). The event names the message by its hash and size:
        // the text itself stays in the session's history, not in the long-lived chain.
        await audit.AppendAsync(user.TenantId, async (unit, ct) =>
        {
            unit.Db.AgentTurns.Add(turn);
            unit.Db.AgentMessages.Add(TextMessage(turn, MessageRoles.User, content));
            await unit.Db.SaveChangesAsync(ct);
            return (0, (IReadOnlyList<AuditEntry>)[new AuditEntry("agent.turn_started", new AuditActor(user.UserId, user.DisplayName), sessionId,
                Payload: new JsonObject
                {
                    ["turnId"] = turn.Id.ToString(),
                    ["model"] = model.ModelId,
                    ["messageChars"] = content.Length,
                    ["messageSha256"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(content))),
                })]);
        }, cancellationToken);
        db.AgentTurns.Attach(turn);

        // Saved after the user's message, so it follows it in the history (sequence order) and stays with its turn.
        if (await memory.RecallAsync(user, content, cancellationToken) is { } recalled)
        {
            db.AgentMessages.Add(TextMessage(turn, MessageRoles.Memory, recalled));
            await db.SaveChangesAsync(cancellationToken);
        }

        return await RunAsync(turn, cancellationToken);
    }

    /// <summary>
    /// Continues an open turn when it can go on: its approval was decided, its session was resumed, or the process
    /// running it died. Returns false when there is nothing to do yet or another process holds the turn. This is the
    /// hook for the approval executor and for session resume; <see cref="TurnRecovery"/> also calls it on a timer.
    /// </summary>
    public async Task<bool> ContinueAsync(string tenantId, Guid turnId, CancellationToken cancellationToken)
    {
        tenant.Set(tenantId);
        var sessionId = await db.AgentTurns.AsNoTracking().Where(t => t.Id == turnId).Select(t => (Guid?)t.SessionId).FirstOrDefaultAsync(cancellationToken);
        if (sessionId is null)
        {
            return false;
        }

        await using var held = await locks.TryAcquireAsync(sessionId.Value, cancellationToken);
        if (held is null)
        {
            return false;
        }

        // Read under the lock: whoever held it before may have moved the turn on.
        var turn = await db.AgentTurns.FirstAsync(t => t.Id == turnId, cancellationToken);
        switch (turn.Status)
        {
            case TurnStatus.WaitingForApproval:
                var call = await db.ToolCalls.AsNoTracking().FirstOrDefaultAsync(c => c.Id == turn.WaitingOnCallId, cancellationToken);
                if (call is not null && call.Status is ToolCallStatus.PendingApproval or ToolCallStatus.Approved or ToolCallStatus.Running)
                {
                    return false;
                }

                var marker = await db.AgentMessages.FirstAsync(m => m.TurnId == turn.Id && m.PipelineCallId == turn.WaitingOnCallId, cancellationToken);
                marker.Content = call is null ? Refusal(marker.ToolName!, "call_missing", "The call waiting for approval no longer exists.") : Serialize(ToolCallEvent.Of(call));
                marker.CallStatus = call is null ? "failed" : AuditViews.Status(call.Status);
                marker.Tokens = ContextWindow.EstimateTokens(marker.Content);
                break;
            case TurnStatus.Paused:
                if (await db.Sessions.AsNoTracking().AnyAsync(s => s.Id == turn.SessionId && s.Status == SessionStatus.Paused, cancellationToken))
                {
                    return false;
                }

                break;
            case TurnStatus.Running:
                // We hold the lock of a turn stored as running: the process that ran it is gone.
                await MarkInterruptedAsync(turn, cancellationToken);
                break;
            default:
                return false;
        }

        logger.LogInformation("Continuing turn {Turn} of session {Session} from {Status} after {Step}", turn.Id, turn.SessionId, turn.Status, turn.LastStep);
        turn.Status = TurnStatus.Running;
        turn.WaitingOnCallId = null;
        await SaveAsync(turn, turn.LastStep, cancellationToken);
        await RunAsync(turn, cancellationToken);
        return true;
    }

    private Task<TurnStatus?> OpenTurnAsync(Guid sessionId, CancellationToken cancellationToken) =>
        db.AgentTurns.AsNoTracking()
            .Where(t => t.SessionId == sessionId && (t.Status == TurnStatus.Running || t.Status == TurnStatus.WaitingForApproval || t.Status == TurnStatus.Paused))
            .Select(t => (TurnStatus?)t.Status).FirstOrDefaultAsync(cancellationToken);

    /// <summary>The stored state of a turn, for <c>GET</c> and for the answer of a continued turn.</summary>
    public async Task<TurnResult> ResultAsync(AgentTurn turn, CancellationToken cancellationToken)
    {
        var results = await db.AgentMessages.AsNoTracking()
            .Where(m => m.TurnId == turn.Id && m.Role == MessageRoles.Tool && m.Content != null)
            .OrderBy(m => m.Seq)
            .Select(m => m.Content!)
            .ToListAsync(cancellationToken);
        return new TurnResult(turn.Id, turn.Status, turn.Reply, results.Select(r => JsonDocument.Parse(r).RootElement.Clone()).ToList(), turn.Error);
    }

    internal static ModelCall Usage(AgentTurn turn, ModelResponse response, string purpose, DateTimeOffset now) => new()
    {
        Id = Guid.CreateVersion7(),
        TenantId = turn.TenantId,
        SessionId = turn.SessionId,
        TurnId = turn.Id,
        UserId = turn.UserId,
        Model = response.Model,
        Purpose = purpose,
        InputTokens = response.InputTokens,
        OutputTokens = response.OutputTokens,
        CreatedAt = now,
    };

    private async Task<TurnResult> RunAsync(AgentTurn turn, CancellationToken cancellationToken)
    {
        var caller = new CurrentUser(turn.TenantId, turn.UserId, turn.UserName, turn.UserTeams, turn.UserRoles);
        var turnKernel = kernel.Clone();
        new TurnInvocation(caller, turn.SessionId, turn.Id).AttachTo(turnKernel);
        try
        {
            while (await StepAsync(turn, caller, turnKernel, cancellationToken))
            {
            }
        }
        catch (Exception e) when (ModelFailure(e) is { } failure)
        {
            // The resilience handler already retried; the turn stops here and can be retried with a new message.
            logger.LogWarning(e, "Model call of turn {Turn} failed", turn.Id);
            turn.Status = TurnStatus.Failed;
            turn.Error = failure;
            await EndAsync(turn, "model_failed", CancellationToken.None);
        }

        return await ResultAsync(turn, cancellationToken);
    }

    /// <summary>One stored step; false when the turn stopped (finished, waiting or paused).</summary>
    private async Task<bool> StepAsync(AgentTurn turn, CurrentUser caller, Kernel turnKernel, CancellationToken cancellationToken)
    {
        if (await db.Sessions.AsNoTracking().AnyAsync(s => s.Id == turn.SessionId && s.Status == SessionStatus.Paused, cancellationToken))
        {
            turn.Status = TurnStatus.Paused;
            await SaveAsync(turn, "paused", cancellationToken);
            return false;
        }

        var pending = await PendingCallsAsync(turn, cancellationToken);
        if (pending.Count > 0)
        {
            return await RunCallAsync(turn, turnKernel, pending[0], cancellationToken);
        }

        // MaxIterations bounds the rounds of calls that run: once they all ran, the turn ends without asking the model
        // for another round it would have to refuse.
        if (turn.Iterations >= options.Value.MaxIterations)
        {
            turn.Status = TurnStatus.MaxIterations;
            await EndAsync(turn, "max_iterations", cancellationToken);
            return false;
        }

        var offered = await OfferedAsync(caller, cancellationToken);
        var names = new FunctionNames(offered.Select(t => t.Name));
        var history = await context.BuildAsync(turn, names, cancellationToken);
        var response = await model.CompleteAsync(history, offered.Select(t => ToolFunctions.For(t, names)).ToList(), "turn", turn.TenantId, cancellationToken);

        var now = time.GetUtcNow();
        var calls = response.Calls.Select(c => new StoredCall(c.Id, names.ToTool(c.Function) ?? c.Function, c.Function, c.Arguments)).ToList();
        var message = new AgentMessage
        {
            TenantId = turn.TenantId,
            SessionId = turn.SessionId,
            TurnId = turn.Id,
            Role = MessageRoles.Assistant,
            Content = response.Text,
            ToolCalls = calls.Count > 0 ? StoredCall.Serialize(calls) : null,
            Tokens = response.OutputTokens > 0 ? response.OutputTokens : ContextWindow.EstimateTokens(response.Text, calls.Count > 0 ? StoredCall.Serialize(calls) : null),
            CreatedAt = now,
        };
        db.AgentMessages.Add(message);
        db.ModelCalls.Add(Usage(turn, response, "turn", now));
        if (calls.Count == 0)
        {
            turn.Status = TurnStatus.Completed;
            turn.Reply = response.Text ?? "";
            await EndAsync(turn, "completed", cancellationToken);
            return false;
        }

        turn.Iterations++;
        if (turn.Iterations > options.Value.MaxIterations)
        {
            // Only when the limit was lowered while this turn was stored mid-way. Every proposed call gets an answer,
            // so the stored history stays a valid conversation for the next turn.
            foreach (var call in calls)
            {
                db.AgentMessages.Add(ToolMessage(turn, call, Refusal(call.Tool, "max_iterations",
                    $"Not run: the turn reached its limit of {options.Value.MaxIterations} tool-call rounds."), "rejected"));
            }

            turn.Status = TurnStatus.MaxIterations;
            await EndAsync(turn, "max_iterations", cancellationToken);
            return false;
        }

        await SaveAsync(turn, "model_call", cancellationToken);
        return true;
    }

    private async Task<bool> RunCallAsync(AgentTurn turn, Kernel turnKernel, StoredCall call, CancellationToken cancellationToken)
    {
        if (Arguments(turn, call) is not { } arguments)
        {
            await SaveAsync(turn, $"tool:{call.Tool}", cancellationToken);
            return true;
        }

        // Stored before the call runs: if the process dies during the call, recovery finds this marker and reports
        // the call as interrupted instead of running it again.
        var marker = ToolMessage(turn, call, null, Started);
        db.AgentMessages.Add(marker);
        await SaveAsync(turn, $"tool:{call.Tool}", cancellationToken);

        FunctionResult result;
        try
        {
            result = await turnKernel.InvokeAsync(ToolFunctions.ForCall(call.Tool, call.Function), arguments, cancellationToken);
        }
        catch (HarnessError e) when (e.Code == "session_paused")
        {
            // Paused between our check and the pipeline's: the call did not run; it runs after resume.
            db.AgentMessages.Remove(marker);
            turn.Status = TurnStatus.Paused;
            await SaveAsync(turn, "paused", cancellationToken);
            return false;
        }
        catch (HarnessError e)
        {
            // The pipeline refused before running anything (arguments it cannot record, the audit chain unavailable):
            // the model hears why, as a rejection when the call itself was at fault.
            var status = e.Kind is ErrorKind.Unavailable or ErrorKind.UpstreamFailed ? "failed" : "rejected";
            marker.Content = Refusal(call.Tool, e.Code, e.Message, status);
            marker.CallStatus = status;
            marker.Tokens = ContextWindow.EstimateTokens(marker.Content);
            await SaveAsync(turn, $"tool:{call.Tool}", cancellationToken);
            return true;
        }

        var response = PipelineFunctionFilter.ResponseOf(result)
            ?? throw new InvalidOperationException($"The invocation of {call.Tool} returned no pipeline response.");
        marker.Content = result.GetValue<string>();
        marker.CallStatus = AuditViews.Status(response.Status);
        marker.PipelineCallId = response.Id;
        marker.Tokens = ContextWindow.EstimateTokens(marker.Content);
        if (response.Status == ToolCallStatus.PendingApproval)
        {
            turn.Status = TurnStatus.WaitingForApproval;
            turn.WaitingOnCallId = response.Id;
            await SaveAsync(turn, $"approval:{call.Tool}", cancellationToken);
            return false;
        }

        await SaveAsync(turn, $"tool:{call.Tool}", cancellationToken);
        return true;
    }

    // The call's arguments as kernel arguments; when they cannot be (not JSON, not an object, names that collide) the
    // refusal is stored as the call's result, and the model reads why.
    private KernelArguments? Arguments(AgentTurn turn, StoredCall call)
    {
        string? error;
        try
        {
            using var document = JsonDocument.Parse(call.Arguments.Length == 0 ? "{}" : call.Arguments);
            if (PipelineFunctionFilter.ToKernelArguments(document.RootElement.Clone(), out error) is { } arguments)
            {
                return arguments;
            }
        }
        catch (JsonException e)
        {
            error = $"The arguments are not valid JSON: {e.Message}";
        }

        db.AgentMessages.Add(ToolMessage(turn, call, Refusal(call.Tool, "invalid_arguments", error!), "rejected"));
        return null;
    }

    private async Task<List<StoredCall>> PendingCallsAsync(AgentTurn turn, CancellationToken cancellationToken)
    {
        var assistant = await db.AgentMessages
            .Where(m => m.TurnId == turn.Id && m.Role == MessageRoles.Assistant)
            .OrderByDescending(m => m.Seq)
            .FirstOrDefaultAsync(cancellationToken);
        if (assistant?.ToolCalls is null)
        {
            return [];
        }

        var answered = await db.AgentMessages
            .Where(m => m.TurnId == turn.Id && m.Role == MessageRoles.Tool && m.Seq > assistant.Seq)
            .Select(m => m.ToolCallId!)
            .ToListAsync(cancellationToken);
        return StoredCall.Parse(assistant.ToolCalls).Where(c => !answered.Contains(c.Id)).ToList();
    }

    // Offered: the tenant's enabled tools that are not denied to this user outright; each call is still decided alone.
    private async Task<List<ToolDefinition>> OfferedAsync(CurrentUser caller, CancellationToken cancellationToken)
    {
        var resolver = await policies.ResolverForAsync(caller, cancellationToken);
        var tools = await registry.ListAsync(caller.TenantId, cancellationToken);
        return tools.Where(t => t.Enabled && resolver.IsOffered(t.Name)).OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
    }

    private async Task MarkInterruptedAsync(AgentTurn turn, CancellationToken cancellationToken)
    {
        var markers = await db.AgentMessages.Where(m => m.TurnId == turn.Id && m.CallStatus == Started).ToListAsync(cancellationToken);
        foreach (var marker in markers)
        {
            var now = time.GetUtcNow();
            // The pipeline's row of that call, if it got as far as storing one, never finished. InterruptedCallRecovery
            // may have recorded it already (at start); otherwise it is recorded here, once, with its audit event.
            var stuck = await db.ToolCalls.AsNoTracking()
                .Where(c => c.SessionId == turn.SessionId && c.Tool == marker.ToolName && c.CreatedAt >= marker.CreatedAt
                    && (c.Status == ToolCallStatus.Running || c.Status == ToolCallStatus.Interrupted))
                .OrderBy(c => c.CreatedAt)
                .FirstOrDefaultAsync(cancellationToken);
            if (stuck is null || stuck.Status == ToolCallStatus.Running)
            {
                await audit.AppendAsync(turn.TenantId, async (unit, ct) =>
                {
                    var changed = stuck is null ? 0 : await unit.Db.ToolCalls.Where(c => c.Id == stuck.Id && c.Status == ToolCallStatus.Running)
                        .ExecuteUpdateAsync(c => c.SetProperty(x => x.Status, ToolCallStatus.Interrupted).SetProperty(x => x.CompletedAt, now), ct);
                    return (changed, (IReadOnlyList<AuditEntry>)[new AuditEntry("tool_call.interrupted", new AuditActor("harness", "HarnessServer"),
                        turn.SessionId, marker.ToolName, Payload: new JsonObject
                        {
                            ["callId"] = stuck?.Id.ToString(),
                            ["turnId"] = turn.Id.ToString(),
                            ["modelCallId"] = marker.ToolCallId,
                            ["reason"] = "the server stopped while the agent turn was running the call",
                        })]);
                }, cancellationToken);
            }

            marker.PipelineCallId = stuck?.Id;
            marker.CallStatus = Interrupted;
            marker.Content = Refusal(marker.ToolName!, Interrupted,
                "The server stopped while this call was running. It may or may not have taken effect, and it was not run again; check before retrying.", "interrupted");
            marker.Tokens = ContextWindow.EstimateTokens(marker.Content);
        }
    }

    private AgentMessage TextMessage(AgentTurn turn, string role, string content) => new()
    {
        TenantId = turn.TenantId,
        SessionId = turn.SessionId,
        TurnId = turn.Id,
        Role = role,
        Content = content,
        Tokens = ContextWindow.EstimateTokens(content),
        CreatedAt = time.GetUtcNow(),
    };

    private AgentMessage ToolMessage(AgentTurn turn, StoredCall call, string? content, string status) => new()
    {
        TenantId = turn.TenantId,
        SessionId = turn.SessionId,
        TurnId = turn.Id,
        Role = MessageRoles.Tool,
        Content = content,
        ToolCallId = call.Id,
        ToolName = call.Tool,
        CallStatus = status,
        Tokens = ContextWindow.EstimateTokens(content),
        CreatedAt = time.GetUtcNow(),
    };

    private async Task SaveAsync(AgentTurn turn, string step, CancellationToken cancellationToken)
    {
        turn.LastStep = step;
        turn.UpdatedAt = time.GetUtcNow();
        await db.SaveChangesAsync(cancellationToken);
    }

    // A turn's last step, then its audit event. The work is done by then, so an audit outage is logged rather than
    // answered as a failure; the chain shows the turn started and not how it ended.
    private async Task EndAsync(AgentTurn turn, string step, CancellationToken cancellationToken)
    {
        await SaveAsync(turn, step, cancellationToken);
        try
        {
            await audit.AppendAsync(turn.TenantId, [new AuditEntry("agent.turn_ended", new AuditActor(turn.UserId, turn.UserName), turn.SessionId,
                Payload: new JsonObject
                {
                    ["turnId"] = turn.Id.ToString(),
                    ["status"] = JsonNamingPolicy.SnakeCaseLower.ConvertName(turn.Status.ToString()),
                    ["iterations"] = turn.Iterations,
                    ["error"] = turn.Error,
                })], cancellationToken);
        }
        catch (AuditUnavailableException e)
        {
            logger.LogError(e, "Turn {Turn} ended {Status} but its audit event could not be written", turn.Id, turn.Status);
        }
    }

    private string Serialize<T>(T value) => JsonSerializer.Serialize(value, json.Value.SerializerOptions);

    // A result the pipeline did not produce, shaped like its responses so the model reads every result the same way.
    private string Refusal(string tool, string code, string message, string status = "rejected") =>
        Serialize(new { tool, status, error = new { code, message } });

    // Why a model call failed, said without echoing the provider's response body; null for anything that is not a
    // failure of the model endpoint (those propagate and leave the turn to recovery).
    private static string? ModelFailure(Exception e)
    {
        for (var inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is Polly.ExecutionRejectedException)
            {
                return "The model endpoint did not answer in time, or failed so often that calls to it are paused for a while.";
            }
        }

        return e switch
        {
            HttpOperationException { StatusCode: { } status } => $"The model endpoint answered {(int)status} ({status}).",
            ClientResultException { Status: > 0 } result => $"The model endpoint answered {result.Status}.",
            HttpOperationException or ClientResultException or HttpRequestException => $"The model endpoint could not be reached: {e.Message}",
            _ => null,
        };
    }

    private static HarnessError TurnInProgress(Guid sessionId, string state) =>
        new(ErrorKind.Conflict, "turn_in_progress",
            $"Session {sessionId} has a turn that is {state}; send the next message once it has finished.");
}
