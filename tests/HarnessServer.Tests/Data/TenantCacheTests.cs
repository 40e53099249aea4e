using HarnessServer.Data;
using Microsoft.Extensions.Logging.Abstractions;

namespace HarnessServer.Tests.Data;

public sealed class TenantCacheTests
{
    // Publish never touches the database; the feed's listener is not started here.
    private readonly ChangeFeed _feed = new(null!, NullLogger<ChangeFeed>.Instance);
    private readonly Dictionary<string, int> _loads = [];

    private TenantCache<string> Cache(Func<string, Task<string>>? load = null) => new(_feed, "things", load ?? (tenant =>
    {
        _loads[tenant] = _loads.GetValueOrDefault(tenant) + 1;
        return Task.FromResult($"{tenant}#{_loads[tenant]}");
    }));

    [Fact]
    public async Task Loads_once_per_tenant_until_a_change_of_its_kind()
    {
        var cache = Cache();

        Assert.Equal("a#1", await cache.GetAsync("a", default));
        Assert.Equal("a#1", await cache.GetAsync("a", default));
        _feed.Publish("other-kind", "a");
        Assert.Equal("a#1", await cache.GetAsync("a", default));
        _feed.Publish("things", "b");
        Assert.Equal("a#1", await cache.GetAsync("a", default));
        _feed.Publish("things", "a");
        Assert.Equal("a#2", await cache.GetAsync("a", default));
    }

    [Fact]
    public async Task A_change_of_unknown_scope_forgets_every_tenant()
    {
        var cache = Cache();
        await cache.GetAsync("a", default);
        await cache.GetAsync("b", default);

        _feed.Publish(ChangeFeed.AllKinds, null);

        Assert.Equal(("a#2", "b#2"), (await cache.GetAsync("a", default), await cache.GetAsync("b", default)));
    }

    [Fact]
    public async Task A_failed_load_is_not_kept()
    {
        var attempts = 0;
        var cache = Cache(_ => ++attempts == 1 ? Task.FromException<string>(new InvalidOperationException("db down")) : Task.FromResult("ok"));

        await Assert.ThrowsAsync<InvalidOperationException>(() => cache.GetAsync("a", default));

        Assert.Equal("ok", await cache.GetAsync("a", default));
    }
}
