using System.Collections.Concurrent;
using System.Threading.Channels;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Tenancy;
using Microsoft.EntityFrameworkCore;

namespace HarnessServer.Sessions;

/// <summary>
/// Live tool-call status changes per session, across server processes: whoever changes a call notifies
/// <see cref="ChangeFeed"/> in the same transaction (<see cref="CallChanged(AuditUnitOfWork, string, Guid, Guid)"/>), and every process reloads the
/// call for its subscribers of that session.
/// </summary>
internal sealed class SessionEvents
{
    public const string Kind = "call";

    private readonly ConcurrentDictionary<Guid, ConcurrentDictionary<Subscription, byte>> _subscribers = new();
    private readonly TenantDbContextFactory _contexts;

    public SessionEvents(ChangeFeed feed, TenantDbContextFactory contexts)
    {
        _contexts = contexts;
        feed.Changed += (kind, key) =>
        {
            if (kind == Kind && key is not null && Parse(key) is { } change && _subscribers.ContainsKey(change.Session))
            {
                _ = DeliverAsync(change.Tenant, change.Session, change.Call);
            }
        };
    }

    /// <summary>
    /// Tells every process, once the unit commits, that a call of the session changed. A call made outside a session
    /// (<paramref name="session"/> null) has no subscribers and no agent turn to wake, so nothing is sent.
    /// </summary>
    public static void CallChanged(AuditUnitOfWork unit, string tenant, Guid? session, Guid call)
    {
        if (session is { } id)
        {
            unit.NotifyChange(Kind, Key(tenant, id, call));
        }
    }

    /// <summary>The same, as writes that commit with an audit append: one notification, or none outside a session.</summary>
    public static IEnumerable<AuditCommand> CallChanged(string tenant, Guid? session, Guid call) =>
        session is { } id ? [AuditCommand.NotifyChange(Kind, Key(tenant, id, call))] : [];

    private static string Key(string tenant, Guid session, Guid call) => $"{session}/{call}/{tenant}";

    public Subscription Subscribe(Guid sessionId)
    {
        var subscription = new Subscription(this, sessionId);
        _subscribers.GetOrAdd(sessionId, _ => new()).TryAdd(subscription, 0);
        return subscription;
    }

    private async Task DeliverAsync(string tenant, Guid session, Guid callId)
    {
        await using var db = _contexts.Create(tenant);
        var call = await db.ToolCalls.AsNoTracking().FirstOrDefaultAsync(c => c.Id == callId && c.SessionId == session);
        if (call is null || !_subscribers.TryGetValue(session, out var subscribers))
        {
            return;
        }

        var change = ToolCallEvent.Of(call);
        foreach (var subscriber in subscribers.Keys)
        {
            subscriber.Writer.TryWrite(change);
        }
    }

    private static (string Tenant, Guid Session, Guid Call)? Parse(string key)
    {
        var parts = key.Split('/', 3);
        return parts.Length == 3 && Guid.TryParse(parts[0], out var session) && Guid.TryParse(parts[1], out var call)
            ? (parts[2], session, call)
            : null;
    }

    public sealed class Subscription(SessionEvents owner, Guid sessionId) : IDisposable
    {
        private readonly Channel<ToolCallEvent> _channel = Channel.CreateBounded<ToolCallEvent>(
            new BoundedChannelOptions(256) { FullMode = BoundedChannelFullMode.DropOldest });

        public ChannelReader<ToolCallEvent> Reader => _channel.Reader;
        internal ChannelWriter<ToolCallEvent> Writer => _channel.Writer;

        public void Dispose()
        {
            _channel.Writer.TryComplete();
            if (owner._subscribers.TryGetValue(sessionId, out var set))
            {
                set.TryRemove(this, out _);
            }
        }
    }
}
