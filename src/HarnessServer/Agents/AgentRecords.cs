using HarnessServer.Data;

namespace HarnessServer.Agents;

/// <summary>Where one agent turn stands; stored after every step so a paused or crashed turn resumes from it.</summary>
internal enum TurnStatus
{
    Running,
    WaitingForApproval,
    Paused,
    Completed,
    Failed,
    MaxIterations,
    Interrupted,
}

/// <summary>One <c>POST /v1/sessions/{id}/messages</c>: the model calls and tool calls it took, as they happen.</summary>
internal sealed class AgentTurn : ITenantOwned
{
    public Guid Id { get; init; }
    public required string TenantId { get; set; }
    public Guid SessionId { get; init; }
    // The turn's calls run as the user who sent the message, with the teams they had then (like approved calls).
    public required string UserId { get; init; }
    public required string UserName { get; init; }
    public required string[] UserTeams { get; init; }
    public required string[] UserRoles { get; init; }
    public TurnStatus Status { get; set; }
    /// <summary>Tool-call rounds so far (model responses that proposed calls).</summary>
    public int Iterations { get; set; }
    /// <summary>The last stored step, for operators and recovery logs (<c>model_call</c>, <c>tool:fs.write</c>, ...).</summary>
    public string LastStep { get; set; } = "";
    /// <summary>The pipeline call this turn waits on while <see cref="TurnStatus.WaitingForApproval"/>.</summary>
    public Guid? WaitingOnCallId { get; set; }
    public string? Reply { get; set; }
    public string? Error { get; set; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; set; }
    public uint Version { get; set; }

    public bool IsOpen => Status is TurnStatus.Running or TurnStatus.WaitingForApproval or TurnStatus.Paused;
}

/// <summary>Roles of stored messages; <see cref="Summary"/> stands for every message up to its <c>ThroughSeq</c>.</summary>
internal static class MessageRoles
{
    public const string User = "user";
    public const string Assistant = "assistant";
    public const string Tool = "tool";
    public const string Summary = "summary";

    /// <summary>Memory items retrieved for the user message before it (see <see cref="MemoryRecall"/>).</summary>
    public const string Memory = "memory";
}

/// <summary>
/// One message of a session's full history. The model's context is built from these (see <see cref="ContextWindow"/>);
/// nothing is ever deleted: compaction adds a summary, rollback sets <see cref="RolledBack"/>.
/// </summary>
internal sealed class AgentMessage : ITenantOwned
{
    /// <summary>Database-generated, increasing: the order of the session's history.</summary>
    public long Seq { get; init; }
    public required string TenantId { get; set; }
    public Guid SessionId { get; init; }
    public Guid TurnId { get; init; }
    public required string Role { get; init; }
    public string? Content { get; set; }
    /// <summary>An assistant message's proposed calls: JSON <c>[{ id, tool, arguments }]</c>, arguments as the model sent them.</summary>
    public string? ToolCalls { get; init; }
    /// <summary>A tool message answers this call id of the model.</summary>
    public string? ToolCallId { get; init; }
    public string? ToolName { get; init; }
    /// <summary>A tool message's progress: <c>started</c> before the pipeline runs it, then the call's status.</summary>
    public string? CallStatus { get; set; }
    public Guid? PipelineCallId { get; set; }
    public int Tokens { get; set; }
    /// <summary>A summary covers the session's messages up to and including this sequence number.</summary>
    public long? ThroughSeq { get; init; }
    public bool RolledBack { get; set; }
    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>One call to the model and the tokens it used, for usage accounting per session, user and tenant.</summary>
internal sealed class ModelCall : ITenantOwned
{
    public Guid Id { get; init; }
    public required string TenantId { get; set; }
    public Guid SessionId { get; init; }
    public Guid TurnId { get; init; }
    public required string UserId { get; init; }
    public required string Model { get; init; }
    /// <summary><c>turn</c> or <c>summarize</c>.</summary>
    public required string Purpose { get; init; }
    public int InputTokens { get; init; }
    public int OutputTokens { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
}
