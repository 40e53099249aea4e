using System.Text;
using System.Text.Json;
using HarnessServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.Connectors.OpenAI;
using OpenAI.Chat;

namespace HarnessServer.Agents;

/// <summary>
/// Builds the live context of a model call from the session's stored history: the pinned instructions, the newest
/// summary, and every message after what it covers. When that nears <see cref="AgentOptions.ContextTokenBudget"/>,
/// the turns before the last <see cref="AgentOptions.RecentTurns"/> are summarised by the model (a separate call with
/// no tools) into a stored summary message; the full history stays in the database.
/// Tokens are estimated as characters / 4 plus 4 per message: close enough for English text and JSON with
/// OpenAI's tokenizers, needs no tokenizer per model, and the compaction threshold leaves room for the error.
/// </summary>
internal sealed class ContextWindow(HarnessDbContext db, AgentModel model, IOptions<AgentOptions> options, TimeProvider time)
{
    private const string SummaryInstructions =
        "Summarise the conversation below for your own later use. Keep every fact, decision, file changed, command " +
        "run and its outcome, refusal and open task; drop pleasantries. Answer with the summary only.";

    public static int EstimateTokens(string? content, string? toolCalls = null) =>
        ((content?.Length ?? 0) + (toolCalls?.Length ?? 0)) / 4 + 4;

    /// <summary>The live context for the next call of <paramref name="turn"/>, compacting first when needed.</summary>
    public async Task<ChatHistory> BuildAsync(AgentTurn turn, FunctionNames names, CancellationToken cancellationToken)
    {
        var (summary, messages) = await LiveAsync(turn.SessionId, cancellationToken);
        var o = options.Value;
        var total = EstimateTokens(o.Instructions) + (summary?.Tokens ?? 0) + messages.Sum(m => m.Tokens);
        if (total > o.ContextTokenBudget * o.CompactAt)
        {
            var cut = CutBefore(messages, turn.Id, o.RecentTurns);
            if (cut > 0)
            {
                summary = await SummariseAsync(turn, summary, messages[..cut], cancellationToken);
                messages = messages[cut..];
            }
        }

        var history = new ChatHistory(o.Instructions);
        if (summary is not null)
        {
            history.AddSystemMessage($"Summary of the conversation before the messages below:\n{summary.Content}");
        }

        foreach (var message in messages)
        {
            history.Add(ToChat(message, names));
        }

        return history;
    }

    private async Task<(AgentMessage? Summary, List<AgentMessage> Messages)> LiveAsync(Guid sessionId, CancellationToken cancellationToken)
    {
        var summary = await db.AgentMessages.AsNoTracking()
            .Where(m => m.SessionId == sessionId && m.Role == MessageRoles.Summary && !m.RolledBack)
            .OrderByDescending(m => m.Seq)
            .FirstOrDefaultAsync(cancellationToken);
        var after = summary?.ThroughSeq ?? 0;
        var messages = await db.AgentMessages.AsNoTracking()
            .Where(m => m.SessionId == sessionId && m.Seq > after && m.Role != MessageRoles.Summary && !m.RolledBack)
            .OrderBy(m => m.Seq)
            .ToListAsync(cancellationToken);
        return (summary, messages);
    }

    // Cuts only at the start of a turn (a user message), keeping the last `recent` turns and the current one whole,
    // so an assistant message's calls are never separated from their results.
    private static int CutBefore(List<AgentMessage> messages, Guid currentTurn, int recent)
    {
        var starts = messages.Select((m, i) => (m, i)).Where(x => x.m.Role == MessageRoles.User).Select(x => x.i).ToList();
        var keepFrom = starts.Count > recent ? starts[^Math.Max(recent, 1)] : 0;
        var current = messages.FindIndex(m => m.TurnId == currentTurn);
        return current >= 0 ? Math.Min(keepFrom, current) : keepFrom;
    }

    private async Task<AgentMessage> SummariseAsync(AgentTurn turn, AgentMessage? previous, List<AgentMessage> older, CancellationToken cancellationToken)
    {
        var transcript = new StringBuilder();
        if (previous is not null)
        {
            transcript.Append("Earlier summary: ").AppendLine(previous.Content);
        }

        foreach (var message in older)
        {
            transcript.Append(message.Role);
            if (message.ToolName is not null)
            {
                transcript.Append(' ').Append(message.ToolName);
            }

            transcript.Append(": ").AppendLine(message.Content);
            if (message.ToolCalls is not null)
            {
                transcript.Append("calls: ").AppendLine(message.ToolCalls);
            }
        }

        var request = new ChatHistory(SummaryInstructions);
        request.AddUserMessage(transcript.ToString());
        var response = await model.CompleteAsync(request, [], "summarize", turn.TenantId, cancellationToken);
        var summary = new AgentMessage
        {
            TenantId = turn.TenantId,
            SessionId = turn.SessionId,
            TurnId = turn.Id,
            Role = MessageRoles.Summary,
            Content = response.Text ?? "",
            Tokens = EstimateTokens(response.Text),
            ThroughSeq = older[^1].Seq,
            CreatedAt = time.GetUtcNow(),
        };
        db.AgentMessages.Add(summary);
        db.ModelCalls.Add(AgentTurns.Usage(turn, response, "summarize", time.GetUtcNow()));
        await db.SaveChangesAsync(cancellationToken);
        return summary;
    }

    // The metadata key SK's OpenAI connector reads an assistant message's tool calls from (its constant is internal).
    private const string FunctionToolCallsKey = "ChatResponseMessage.FunctionToolCalls";

    private static Microsoft.SemanticKernel.ChatMessageContent ToChat(AgentMessage message, FunctionNames names)
    {
        switch (message.Role)
        {
            case MessageRoles.User:
                return new(AuthorRole.User, message.Content);
            case MessageRoles.Memory:
                // As user-side text, never as system instructions: memory holds what people saved, not our rules.
                return new(AuthorRole.User, message.Content);
            case MessageRoles.Tool:
                return new(AuthorRole.Tool, message.Content ?? "", metadata: new Dictionary<string, object?>
                {
                    [OpenAIChatMessageContent.ToolIdProperty] = message.ToolCallId,
                });
            default:
                var calls = StoredCall.Parse(message.ToolCalls);
                if (calls.Count == 0)
                {
                    return new(AuthorRole.Assistant, message.Content);
                }

                // The calls go back exactly as the model sent them (raw arguments), named as the provider knows them.
                var toolCalls = calls.Select(c => ChatToolCall.CreateFunctionToolCall(c.Id, names.ToFunction(c.Tool), BinaryData.FromString(c.Arguments))).ToList();
                return new(AuthorRole.Assistant, message.Content, metadata: new Dictionary<string, object?>
                {
                    [FunctionToolCallsKey] = toolCalls,
                });
        }
    }
}

/// <summary>One call of an assistant message as stored: the model's id, the registry tool, the raw arguments.</summary>
internal sealed record StoredCall(string Id, string Tool, string Function, string Arguments)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static List<StoredCall> Parse(string? json) =>
        json is null ? [] : JsonSerializer.Deserialize<List<StoredCall>>(json, Json) ?? [];

    public static string Serialize(IReadOnlyList<StoredCall> calls) => JsonSerializer.Serialize(calls, Json);
}
