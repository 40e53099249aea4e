using HarnessServer.Identity;
using HarnessServer.Memory;
using HarnessServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace HarnessServer.Tests.Memory;

/// <summary>
/// The server with seams a test can observe: a policy that denies <c>team:locked</c> and asks on <c>team:review</c>,
/// and an audit that records what it was given and what its transaction saw.
/// </summary>
public class MemoryApplication : HarnessApplication
{
    public RecordingAudit Audit { get; } = new();

    protected override void Configure(IDictionary<string, string?> settings) =>
        settings["Harness:Memory:ReembedInterval"] = "00:00:00.500";

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        base.ConfigureWebHost(builder);
        builder.ConfigureTestServices(services =>
        {
            services.AddSingleton<IMemoryPolicy>(new ScriptedPolicy());
            services.AddSingleton<IMemoryAudit>(Audit);
        });
    }

    /// <summary>Runs SQL as the superuser of the test database.</summary>
    public async Task ExecuteAsync(string sql, params object[] values)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        await command.ExecuteNonQueryAsync();
    }

    public async Task<long> CountAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private sealed class ScriptedPolicy : IMemoryPolicy
    {
        public Task<MemoryPolicyOutcome> DecideAsync(CurrentUser user, string tool, string @namespace, CancellationToken cancellationToken) =>
            Task.FromResult(@namespace switch
            {
                "team:locked" => MemoryPolicyOutcome.Deny("team memory is read-only"),
                "team:review" => MemoryPolicyOutcome.Ask("a lead reviews shared notes"),
                _ => MemoryPolicyOutcome.Allow,
            });
    }

    public sealed class RecordingAudit : IMemoryAudit
    {
        private readonly List<(MemoryAuditEvent Event, string TransactionTenant)> _events = [];

        public IReadOnlyList<(MemoryAuditEvent Event, string TransactionTenant)> Events
        {
            get
            {
                lock (_events)
                {
                    return _events.ToList();
                }
            }
        }

        public async Task RecordAsync(MemoryAuditEvent auditEvent, NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken)
        {
            await using var command = new NpgsqlCommand("SELECT current_setting('harness.tenant_id')", connection, transaction);
            var tenant = (string)(await command.ExecuteScalarAsync(cancellationToken))!;
            lock (_events)
            {
                _events.Add((auditEvent, tenant));
            }
        }
    }
}

/// <summary>Every namespace searched through HNSW with iterative scan, never exactly.</summary>
public sealed class HnswOnlyMemoryApplication : MemoryApplication
{
    protected override void Configure(IDictionary<string, string?> settings)
    {
        base.Configure(settings);
        settings["Harness:Memory:ExactSearchMaxRows"] = "0";
    }
}
