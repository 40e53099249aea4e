using System.Text.Json.Nodes;
using HarnessServer.Audit;
using HarnessServer.Tests.Infrastructure;
using Npgsql;

namespace HarnessServer.Tests.Audit;

internal static class AuditTestData
{
    public static readonly AuditActor Alice = new("alice", "Alice Ng");

    public static AuditEntry Entry(int i, string type = "tool.executed", string? tool = "fs.read", string effect = "allow", string? user = null) => new(
        type,
        user is null ? Alice : new AuditActor(user, user),
        SessionId: Guid.Parse("6f1c1d2e-0000-4000-8000-000000000001"),
        Tool: tool,
        Decision: new JsonObject { ["effect"] = effect, ["level"] = "org", ["source"] = "org.yaml", ["reason"] = null },
        Payload: new JsonObject { ["i"] = i, ["status"] = "succeeded", ["path"] = $"src/é/{i}.txt", ["note"] = "tab\there \"quoted\" <b>" });

    /// <summary>Runs SQL as the superuser with triggers off for the session, the way an attacker with DBA rights would.</summary>
    public static async Task TamperAsync(HarnessApplication app, string sql)
    {
        await using var connection = new NpgsqlConnection(app.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SET session_replication_role = replica; {sql}", connection);
        await command.ExecuteNonQueryAsync();
    }
}
