using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Npgsql;

namespace HarnessServer.Soak;

/// <summary>Everything the load saw, for the checks.</summary>
internal sealed record SoakObservations(
    IReadOnlyList<SoakOutcome> Outcomes, IReadOnlyList<SoakCall> Calls, IReadOnlyList<SoakFault> Faults,
    IReadOnlyDictionary<Guid, string> Sessions, long SseConnections, long SseEvents, TimeSpan LoadEnded, TimeSpan Drained,
    string LoadAverageBefore, string LoadAverageAfter);

/// <summary>The invariants' verdict: what was violated (empty when none) and the results file's markdown.</summary>
internal sealed record SoakReport(IReadOnlyList<string> Violations, string Markdown);

/// <summary>
/// After the load: waits for every held call to be decided and finished, then checks the invariants from the
/// database (as its owner), the workspaces (the shared folder) and the audit API through the proxy.
/// </summary>
internal sealed partial class SoakChecks(SoakOptions options, HttpClient proxy, Func<int, string> adminToken) : IAsyncDisposable
{
    private readonly NpgsqlDataSource _database = NpgsqlDataSource.Create(options.MigrationsConnectionString);

    [GeneratedRegex(@"^sed -i '\$a (?<marker>[a-z]+-[0-9a-f]{32})' (?<file>ledger\.txt|approved\.txt)$")]
    private static partial Regex AppendCommand();

    /// <summary>Waits until no approval of these tenants is pending and no call is approved or running (the approvers keep deciding).</summary>
    public async Task DrainAsync(string[] tenants, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            await using var command = _database.CreateCommand("""
                SELECT (SELECT count(*) FROM approvals WHERE tenant_id = ANY($1) AND status = 'Pending')
                     + (SELECT count(*) FROM tool_calls WHERE tenant_id = ANY($1) AND status IN ('PendingApproval', 'Approved', 'Running'))
                """);
            command.Parameters.Add(new NpgsqlParameter { Value = tenants });
            try
            {
                if ((long)(await command.ExecuteScalarAsync(cancellationToken))! == 0)
                {
                    return;
                }
            }
            catch (NpgsqlException)
            {
                // The switchover's last seconds: ask again.
            }

            await Task.Delay(1000, cancellationToken);
        }
    }

    public async Task<SoakReport> CheckAsync(SoakObservations seen, CancellationToken cancellationToken)
    {
        var violations = new List<string>();
        var tenants = Enumerable.Range(0, options.Tenants).Select(SoakRun.Tenant).ToArray();
        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture, $"# Soak: two replicas behind YARP, SIGKILLs and a database switchover ({DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC)");
        report.AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"- {options.Users} users ({options.Tenants} tenants, 2 approvers each), {options.Duration.TotalSeconds:F0} s of load, think time {options.ThinkMin.TotalMilliseconds:F0}-{options.ThinkMax.TotalMilliseconds:F0} ms; drained {(seen.Drained - seen.LoadEnded).TotalSeconds:F0} s after the load stopped");
        report.AppendLine(CultureInfo.InvariantCulture, $"- machine: {Environment.ProcessorCount} cores; load average (1/5/15 min, runnable/total, last pid) before `{seen.LoadAverageBefore}`, after `{seen.LoadAverageAfter}`");
        report.AppendLine(CultureInfo.InvariantCulture, $"- database: {(options.PatroniFolder is null ? "one PostgreSQL (no Patroni on this machine: no switchover)" : "Patroni pair (scripts/patroni-cluster.sh), synchronous replication, multi-host connection string")}");
        report.AppendLine();
        report.AppendLine("## Faults");
        report.AppendLine();
        report.AppendLine("| fault | target | start | back (s after start) |");
        report.AppendLine("| --- | --- | --- | --- |");
        foreach (var fault in seen.Faults)
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"| {fault.Kind} | {fault.Target} | {fault.Start:mm\\:ss} | {(fault.End - fault.Start).TotalSeconds:F1} |");
        }

        var expectedKills = (int)Math.Ceiling(options.Duration / options.KillEvery) - 1;
        if (seen.Faults.Count(f => f.Kind == "kill") < expectedKills)
        {
            violations.Add($"only {seen.Faults.Count(f => f.Kind == "kill")} of {expectedKills} kills happened");
        }

        if (options.FailoverAt is not null && options.PatroniFolder is not null && seen.Faults.All(f => f.Kind != "failover"))
        {
            violations.Add("the database switchover did not happen");
        }

        report.AppendLine();
        report.AppendLine("## Invariants");
        report.AppendLine();
        await CheckChainsAsync(tenants, report, violations, cancellationToken);
        await CheckCallsAsync(tenants, seen, report, violations, cancellationToken);
        CheckStatuses(seen, report, violations);
        if (seen.SseEvents == 0)
        {
            violations.Add("the SSE listeners received no event through the proxy");
        }

        report.AppendLine(CultureInfo.InvariantCulture, $"- SSE through YARP: {seen.SseConnections} connections (reconnects after a kill included), {seen.SseEvents} events received");
        report.AppendLine();
        report.AppendLine(violations.Count == 0 ? "**Every invariant held.**" : $"**{violations.Count} violations:**");
        foreach (var violation in violations)
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"- {violation}");
        }

        Latencies(seen, report);
        return new SoakReport(violations, report.ToString());
    }

    private async Task CheckChainsAsync(string[] tenants, StringBuilder report, List<string> violations, CancellationToken cancellationToken)
    {
        for (var t = 0; t < tenants.Length; t++)
        {
            await using var command = _database.CreateCommand("SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM audit_events WHERE tenant_id = $1");
            command.Parameters.Add(new NpgsqlParameter { Value = tenants[t] });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            var (count, min, max) = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
            if (count == 0 || min != 1 || max != count)
            {
                violations.Add($"{tenants[t]}: the chain has {count} events with seq {min}..{max} (a gap or a duplicate)");
            }

            using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/audit/verify");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", adminToken(t));
            using var response = await proxy.SendAsync(request, cancellationToken);
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            var verified = response.IsSuccessStatusCode ? JsonDocument.Parse(text).RootElement : default;
            var valid = response.IsSuccessStatusCode && verified.GetProperty("valid").GetBoolean() && verified.GetProperty("checked").GetInt64() == count;
            if (!valid)
            {
                violations.Add($"{tenants[t]}: /v1/audit/verify answered {(int)response.StatusCode} {text}");
            }

            report.AppendLine(CultureInfo.InvariantCulture, $"- audit chain of {tenants[t]}: {count} events, seq 1..{max} without a gap, `/v1/audit/verify` {(valid ? "valid, every event checked" : "NOT valid")}");
        }
    }

    private sealed record StoredCall(Guid Id, string Tenant, Guid Session, string Status, string? Command, Guid? Approval, string? ApprovalStatus, string? Error);

    private async Task CheckCallsAsync(string[] tenants, SoakObservations seen, StringBuilder report, List<string> violations, CancellationToken cancellationToken)
    {
        var calls = new List<StoredCall>();
        await using (var command = _database.CreateCommand("""
            SELECT c.id, c.tenant_id, c.session_id, c.status, c.arguments->>'command', a.id, a.status, c.error->>'code'
            FROM tool_calls c LEFT JOIN approvals a ON a.tool_call_id = c.id
            WHERE c.tenant_id = ANY($1) AND c.tool = 'shell.exec'
            """))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = tenants });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                calls.Add(new StoredCall(reader.GetGuid(0), reader.GetString(1), reader.GetGuid(2), reader.GetString(3),
                    reader.IsDBNull(4) ? null : reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetGuid(5), reader.IsDBNull(6) ? null : reader.GetString(6), reader.IsDBNull(7) ? null : reader.GetString(7)));
            }
        }

        var executed = new Dictionary<Guid, long>();
        await using (var command = _database.CreateCommand(
            "SELECT (payload::jsonb->>'callId')::uuid, count(*) FROM audit_events WHERE tenant_id = ANY($1) AND type = 'tool_call.executed' GROUP BY 1"))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = tenants });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                executed[reader.GetGuid(0)] = reader.GetInt64(1);
            }
        }

        // Every line of every ledger, counted; each must belong to one call, once.
        var lines = new Dictionary<(Guid Session, string File, string Marker), int>();
        foreach (var (session, tenant) in seen.Sessions)
        {
            foreach (var file in (string[])["ledger.txt", "approved.txt"])
            {
                var path = Path.Combine(options.WorkFolder, "workspaces", tenant, session.ToString(), file);
                foreach (var line in File.Exists(path) ? File.ReadLines(path).Skip(1) : [])
                {
                    lines[(session, file, line)] = lines.GetValueOrDefault((session, file, line)) + 1;
                }
            }
        }

        var outcomes = new Dictionary<string, int>();
        var accounted = new HashSet<(Guid, string, string)>();
        foreach (var call in calls)
        {
            var match = call.Command is null ? null : AppendCommand().Match(call.Command);
            if (match is not { Success: true })
            {
                continue;
            }

            var key = (call.Session, match.Groups["file"].Value, match.Groups["marker"].Value);
            accounted.Add(key);
            var inLedger = lines.GetValueOrDefault(key);
            var records = executed.GetValueOrDefault(call.Id);
            var kind = match.Groups["marker"].Value.Split('-')[0];
            var label = $"{kind}: {call.Status.ToLowerInvariant()}{(call.Error is { } error ? $" `{error}`" : "")}{(call.ApprovalStatus is { } a ? $" (approval {a.ToLowerInvariant()})" : "")}, line {(inLedger > 0 ? "present" : "absent")}";
            outcomes[label] = outcomes.GetValueOrDefault(label) + 1;
            if (inLedger > 1 || records > 1)
            {
                violations.Add($"call {call.Id} ran twice: {inLedger} lines, {records} executed events");
            }
            else if (call.Status is "Succeeded" && (inLedger != 1 || records != 1))
            {
                violations.Add($"call {call.Id} succeeded with {inLedger} lines and {records} executed events");
            }
            else if (call.Status is "Interrupted" && records != 0)
            {
                violations.Add($"call {call.Id} was recorded interrupted and executed");
            }
            else if (call.Status is "PendingApproval" or "Approved" or "Running")
            {
                violations.Add($"call {call.Id} is still {call.Status} after the drain");
            }
            else if (call.Status is "Denied" or "Rejected" && inLedger != 0)
            {
                violations.Add($"call {call.Id} was {call.Status} but its line is in the ledger");
            }

            if (call.ApprovalStatus is "Pending")
            {
                violations.Add($"approval {call.Approval} of call {call.Id} was never decided");
            }
        }

        foreach (var line in lines.Keys.Where(l => !accounted.Contains(l)))
        {
            violations.Add($"{line.File} of session {line.Session} has a line no call accounts for: {line.Marker}");
        }

        // What the load was told is in the database: an acknowledged call finished exactly once, a held one has its approval.
        var stored = calls.ToDictionary(c => c.Id);
        foreach (var call in seen.Calls)
        {
            if (!stored.TryGetValue(call.CallId, out var row))
            {
                violations.Add($"call {call.CallId} was answered but is not stored");
            }
            else if (call.ApprovalId is { } approval && row.Approval != approval)
            {
                violations.Add($"call {call.CallId} was held for approval {approval}, which is lost");
            }
            else if (call.ApprovalId is null && (row.Status != "Succeeded" || executed.GetValueOrDefault(call.CallId) != 1))
            {
                violations.Add($"call {call.CallId} was answered succeeded but is {row.Status} with {executed.GetValueOrDefault(call.CallId)} executed events");
            }
        }

        var asked = seen.Calls.Count(c => c.ApprovalId is not null);
        report.AppendLine(CultureInfo.InvariantCulture, $"- shell.exec appends: {calls.Count} calls stored, {lines.Values.Sum()} ledger lines, {calls.Count(c => executed.ContainsKey(c.Id))} of them with an executed event, none with two; {seen.Calls.Count - asked} answered `succeeded` and {asked} held for approval, every one of them found");
        report.AppendLine();
        report.AppendLine("| appending calls by kind, final status and ledger | count |");
        report.AppendLine("| --- | --- |");
        foreach (var (label, count) in outcomes.OrderBy(o => o.Key, StringComparer.Ordinal))
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"| {label} | {count} |");
        }

        report.AppendLine();
        report.AppendLine("`call` is a direct allowed call, `ask` one held for approval, `turn` the scripted model's call in an agent turn. " +
            "`interrupted, line present`: the replica was killed after the sandbox ran and before the result was recorded; the sweep recorded " +
            "the call interrupted, once, and it never ran again. `rejected` `workspace_changed` after an approval: the member's later appends " +
            "changed the workspace the approver saw, so the approved call refused to run (the product's rule, not a loss).");
        report.AppendLine();
    }

    private void CheckStatuses(SoakObservations seen, StringBuilder report, List<string> violations)
    {
        bool Near(SoakOutcome o, string? kind) => seen.Faults.Any(f => (kind is null || f.Kind == kind)
            && o.At + TimeSpan.FromMilliseconds(o.Milliseconds) >= f.Start && o.At <= f.End + options.FaultWindow);

        var proxyErrors = seen.Outcomes.Where(o => o.ProxyError is not null).ToList();
        var unavailable = seen.Outcomes.Where(o => o.ProxyError is null && o.Status == 503).ToList();
        var otherServerErrors = seen.Outcomes.Where(o => o.ProxyError is null && o.Status >= 500 && o.Status != 503).ToList();
        foreach (var o in otherServerErrors.Take(10))
        {
            violations.Add($"{o.Status} {o.Outcome} on {o.Route} at {o.At:mm\\:ss}");
        }

        foreach (var o in unavailable.Where(o => o.Outcome is not ("database_unavailable" or "audit_unavailable") || !Near(o, null)).Take(10))
        {
            violations.Add($"503 {o.Outcome} on {o.Route} at {o.At:mm\\:ss}, away from any fault");
        }

        foreach (var o in proxyErrors.Where(o => !Near(o, "kill")).Take(10))
        {
            violations.Add($"proxy error {o.ProxyError} on {o.Route} at {o.At:mm\\:ss}, away from any kill");
        }

        report.AppendLine(CultureInfo.InvariantCulture, $"- responses: {seen.Outcomes.Count}; 5xx from the servers other than 503: {otherServerErrors.Count}; 503 `database_unavailable`/`audit_unavailable`: {unavailable.Count} (all within {options.FaultWindow.TotalSeconds:F0} s of a fault: {unavailable.All(o => Near(o, null))})");
        report.AppendLine(CultureInfo.InvariantCulture, $"- answered by YARP itself because the replica died under the request or the connection broke mid-answer: {proxyErrors.Count} ({string.Join(", ", proxyErrors.GroupBy(o => $"{o.Status} {o.ProxyError}").Select(g => $"{g.Key}: {g.Count()}"))}), all within {options.FaultWindow.TotalSeconds:F0} s of a kill: {proxyErrors.All(o => Near(o, "kill"))}");
    }

    private static void Latencies(SoakObservations seen, StringBuilder report)
    {
        report.AppendLine();
        report.AppendLine("## Latency per route (through the proxy, every response)");
        report.AppendLine();
        report.AppendLine("| route | responses | p50 ms | p99 ms | max ms |");
        report.AppendLine("| --- | --- | --- | --- | --- |");
        foreach (var route in seen.Outcomes.GroupBy(o => o.Route).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var sorted = route.Select(o => o.Milliseconds).Order().ToArray();
            report.AppendLine(CultureInfo.InvariantCulture, $"| `{route.Key}` | {sorted.Length} | {Percentile(sorted, 0.50):F0} | {Percentile(sorted, 0.99):F0} | {sorted[^1]:F0} |");
        }

        report.AppendLine();
        report.AppendLine("## Outcomes per route");
        report.AppendLine();
        report.AppendLine("| route | HTTP | outcome | count |");
        report.AppendLine("| --- | --- | --- | --- |");
        foreach (var group in seen.Outcomes.GroupBy(o => (o.Route, o.Status, o.Outcome)).OrderBy(g => g.Key.Route, StringComparer.Ordinal).ThenBy(g => g.Key.Status))
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"| `{group.Key.Route}` | {group.Key.Status} | {group.Key.Outcome} | {group.Count()} |");
        }
    }

    private static double Percentile(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];

    public ValueTask DisposeAsync() => _database.DisposeAsync();
}
