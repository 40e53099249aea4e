using System.Text.Json;
using System.Text.Json.Nodes;
using HarnessServer.Identity;
using HarnessServer.Sessions;
using HarnessServer.Tools;

namespace HarnessServer.Pipeline;

/// <summary>
/// A call proposed by a user (over HTTP) or by the model on their behalf (agent turns). <see cref="SessionId"/> is null
/// only for the calls the memory routes hold for approval (<see cref="Tools.BuiltInTools.OutsideSessions"/>).
/// </summary>
/// <param name="TurnId">The agent turn whose model proposed the call, when one did (memory records it as provenance).</param>
internal sealed record ToolCallRequest(CurrentUser Caller, Guid? SessionId, string Tool, JsonElement Arguments, Guid? TurnId = null);

/// <summary>Who or what decided a call, as the contract's <c>decision</c> object.</summary>
internal sealed record DecisionView(string Effect, string? Level, string? Source, string? Reason, int? Index = null);

/// <summary>The contract's response of <c>POST /v1/sessions/{id}/tool-calls</c>.</summary>
internal sealed record ToolCallResponse(
    Guid Id,
    string Tool,
    ToolCallStatus Status,
    DecisionView? Decision,
    Guid? ApprovalId,
    JsonNode? Result,
    ToolCallError? Error,
    long? AuditSeq);
