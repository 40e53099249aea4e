namespace HarnessServer.Agents;

/// <summary><c>Harness:Model</c>: any OpenAI-compatible chat completions endpoint (OpenAI, Azure OpenAI v1, Ollama, vLLM).</summary>
internal sealed class ModelOptions
{
    /// <summary>The base URL the client appends <c>/chat/completions</c> to, e.g. <c>https://api.openai.com/v1</c>.</summary>
    public string? Endpoint { get; set; }
    public string? ApiKey { get; set; }
    public string Id { get; set; } = "gpt-4o-mini";

    public bool IsConfigured => !string.IsNullOrWhiteSpace(Endpoint);
}

/// <summary><c>Harness:Agent</c>: limits and context management of agent turns.</summary>
internal sealed class AgentOptions
{
    /// <summary>Tool-call rounds allowed in one turn; then the turn ends with <c>max_iterations</c>.</summary>
    public int MaxIterations { get; set; } = 16;

    /// <summary>Estimated tokens of live context; past <see cref="CompactAt"/> of it, older turns are summarised.</summary>
    public int ContextTokenBudget { get; set; } = 8000;

    /// <summary>The fraction of the budget at which compaction starts.</summary>
    public double CompactAt { get; set; } = 0.8;

    /// <summary>Most recent turns always kept verbatim in the live context.</summary>
    public int RecentTurns { get; set; } = 4;

    /// <summary>
    /// Whether turns start by retrieving relevant memory items into the context, for tenants whose admins have not
    /// chosen (<c>/v1/admin/agent-settings</c>). Off: a tenant turns it on for itself.
    /// </summary>
    public bool MemoryRetrieval { get; set; }

    /// <summary>The default number of memory items retrieved into a turn's context.</summary>
    public int MemoryItems { get; set; } = 5;

    /// <summary>How often recovery looks for turns whose process died or whose approval was decided.</summary>
    public TimeSpan RecoveryInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>The pinned system instructions of every turn.</summary>
    public string Instructions { get; set; } =
        "You are an agent working in a sandboxed workspace on behalf of the user. Use the functions offered to read, " +
        "change and run things in the workspace. Every call is checked against the user's policy: when a result says " +
        "a call was rejected or denied, do not retry it unchanged; explain or choose another way.";
}
