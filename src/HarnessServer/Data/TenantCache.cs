using System.Collections.Concurrent;

namespace HarnessServer.Data;

/// <summary>
/// Per-tenant values (a compiled policy, a tool registry) loaded once and dropped when <see cref="ChangeFeed"/>
/// reports a change of their kind from any server process. A load that fails is not kept.
/// </summary>
internal sealed class TenantCache<T>
{
    private readonly ConcurrentDictionary<string, Lazy<Task<T>>> _entries = new(StringComparer.Ordinal);
    private readonly Func<string, Task<T>> _load;

    public TenantCache(ChangeFeed feed, string kind, Func<string, Task<T>> load)
    {
        _load = load;
        feed.Changed += (changed, tenant) =>
        {
            if (changed != kind && changed != ChangeFeed.AllKinds)
            {
                return;
            }

            if (tenant is null)
            {
                _entries.Clear();
            }
            else
            {
                _entries.TryRemove(tenant, out _);
            }
        };
    }

    public async Task<T> GetAsync(string tenant, CancellationToken cancellationToken)
    {
        var entry = _entries.GetOrAdd(tenant, t => new Lazy<Task<T>>(() => _load(t)));
        try
        {
            return await entry.Value.WaitAsync(cancellationToken);
        }
        catch when (entry.Value.IsFaulted)
        {
            // Only this failed entry: a newer one, loaded after a change, stays.
            _entries.TryRemove(KeyValuePair.Create(tenant, entry));
            throw;
        }
    }
}
