using System.Net;
using HarnessServer.Data;
using HarnessServer.Pipeline;
using HarnessServer.Sessions;
using HarnessServer.Tests.Infrastructure;
using Npgsql;

namespace HarnessServer.Tests.Pipeline;

public sealed class SessionGateTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    private const string Tenant = "gate";

    private async Task<Guid> NewSessionAsync(string tenant = Tenant)
    {
        using var client = app.ClientFor("gina", tenant);
        var created = await (await client.PostAsync("/v1/sessions", null)).JsonAsync(HttpStatusCode.Created);
        return created.GetProperty("id").GetGuid();
    }

    [Fact]
    public async Task Calls_of_one_session_enter_one_at_a_time_in_arrival_order()
    {
        var session = await NewSessionAsync();
        var gate = app.Service<SessionGate>();
        var entered = new List<int>();
        var first = await gate.EnterAsync(Tenant, session, CancellationToken.None);

        // Each waiter is queued before the next one starts; each leaves as soon as it has entered.
        var waiters = Enumerable.Range(1, 5).Select(async i =>
        {
            await using var ticket = await gate.EnterAsync(Tenant, session, CancellationToken.None);
            lock (entered)
            {
                entered.Add(i);
            }
        }).ToList();
        await Task.Delay(100);
        Assert.Empty(entered);

        await first.DisposeAsync();
        await Task.WhenAll(waiters).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal([1, 2, 3, 4, 5], entered);
    }

    [Fact]
    public async Task Another_process_enters_only_once_the_holder_has_left()
    {
        var session = await NewSessionAsync();
        await using var sibling = await app.StartSiblingAsync();
        var held = await app.Service<SessionGate>().EnterAsync(Tenant, session, CancellationToken.None);

        var other = sibling.Service<SessionGate>().EnterAsync(Tenant, session, CancellationToken.None);
        await Task.Delay(300);
        Assert.False(other.IsCompleted);

        await held.DisposeAsync();
        await using var ticket = await other.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(session, ticket.Session?.Id);
    }

    [Fact]
    public async Task A_cancelled_wait_for_another_process_leaves_no_lock_behind()
    {
        var session = await NewSessionAsync();
        await using var sibling = await app.StartSiblingAsync();
        var held = await app.Service<SessionGate>().EnterAsync(Tenant, session, CancellationToken.None);

        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sibling.Service<SessionGate>().EnterAsync(Tenant, session, cancel.Token));
        await held.DisposeAsync();

        await using var again = await sibling.Service<SessionGate>().EnterAsync(Tenant, session, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.NotNull(again.Session);
    }

    [Fact]
    public async Task The_session_is_read_under_the_lock_for_its_own_tenant_only()
    {
        var session = await NewSessionAsync();
        var gate = app.Service<SessionGate>();

        await using (var ticket = await gate.EnterAsync(Tenant, session, CancellationToken.None))
        {
            Assert.Equal(SessionStatus.Active, ticket.Session?.Status);
            Assert.Equal("gina", ticket.Session?.OwnerUserId);
        }

        await using var stranger = await gate.EnterAsync("another-tenant", session, CancellationToken.None);
        Assert.Null(stranger.Session);
    }

    [Fact]
    public async Task A_left_session_holds_no_advisory_lock()
    {
        var session = await NewSessionAsync();
        var ticket = await app.Service<SessionGate>().EnterAsync(Tenant, session, CancellationToken.None);
        await ticket.DisposeAsync();

        // The release is not awaited by the caller; it lands within moments.
        await using var connection = await app.Service<DatabaseSources>().Application.OpenConnectionAsync();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        bool free;
        do
        {
            await using var probe = new NpgsqlCommand("SELECT pg_try_advisory_lock($1)", connection) { Parameters = { new() { Value = SessionGate.LockKey(session) } } };
            free = await probe.ExecuteScalarAsync() is true;
            if (!free)
            {
                await Task.Delay(20);
            }
        }
        while (!free && DateTime.UtcNow < deadline);

        Assert.True(free);
        await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock($1)", connection) { Parameters = { new() { Value = SessionGate.LockKey(session) } } };
        await unlock.ExecuteNonQueryAsync();
    }

    [Fact]
    public async Task Session_lock_connections_run_as_the_restricted_role()
    {
        await using var connection = await app.Service<DatabaseSources>().SessionLocks.OpenConnectionAsync();
        await using var command = new NpgsqlCommand("SELECT current_user", connection);

        Assert.Equal(DataExtensions.ApplicationRole, await command.ExecuteScalarAsync());
    }
}
