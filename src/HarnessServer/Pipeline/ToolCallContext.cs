using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Identity;
using HarnessServer.Policies;
using HarnessServer.Sandbox;
using HarnessServer.Sessions;
using HarnessServer.Tools;

namespace HarnessServer.Pipeline;

/// <summary>What the pipeline knows about one call as it passes its stages.</summary>
internal sealed class ToolCallContext(ToolCallRequest request, Session? session, Workspace? workspace)
{
    public ToolCallRequest Request { get; } = request;
    public CurrentUser Caller => Request.Caller;

    /// <summary>Null for a call outside a session, which only the tools of <see cref="BuiltInTools.OutsideSessions"/> may be.</summary>
    public Session? Session { get; } = session;

    public Guid? SessionId => Session?.Id;

    /// <summary>The session's workspace, opened once for the call; file tools resolve beneath it.</summary>
    public Workspace Workspace => workspace
        ?? throw new InvalidOperationException($"Call {CallId} ({Request.Tool}) was made outside a session and has no workspace.");

    public Guid CallId { get; init; } = Guid.CreateVersion7();

    /// <summary>Set when an approved call re-enters the pipeline: it skips the decision and runs.</summary>
    public ToolCall? Approved { get; init; }

    public ToolDefinition? Tool { get; set; }
    public PolicyDecision? Decision { get; set; }

    /// <summary>The caller's resolver, set by the decide step: <c>fs.list</c> and <c>fs.search</c> filter what they reach with it.</summary>
    public PolicyResolver? Resolver { get; set; }

    /// <summary>For <c>shell.exec</c>: the line as decided (its globs expanded), which is the line that runs.</summary>
    public string? ShellLine { get; set; }
    public Guid? ApprovalId { get; set; }

    /// <summary>Rows an earlier stage prepared that commit with the call and its decision (stage 5).</summary>
    public List<AuditCommand> DecisionWrites { get; } = [];

    /// <summary>The workspace checkpoint taken just before the call ran (id and tree hash), named in its executed event.</summary>
    public (Guid Id, string TreeHash)? Checkpoint { get; set; }

    /// <summary>The execution lease the call runs under, from the commit (or execute) stage until the pipeline is done with it.</summary>
    public CallLeases.Holding? Lease { get; set; }

    public ToolCallStatus? Status { get; private set; }
    public ToolCallError? Error { get; private set; }
    public JsonNode? Result { get; set; }
    public long? AuditSeq { get; set; }

    /// <summary>True once a stage has given the call its final (or waiting) status.</summary>
    public bool IsSettled => Status is not null and not ToolCallStatus.Running;

    public void Settle(ToolCallStatus status, ToolCallError? error = null)
    {
        Status = status;
        Error = error;
    }

    public void MarkRunning() => Status = ToolCallStatus.Running;
}
