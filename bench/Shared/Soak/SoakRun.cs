using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace HarnessServer.Soak;

/// <summary>One response the soak saw: when, on which route, its status, what it said, how long it took.</summary>
internal sealed record SoakOutcome(TimeSpan At, string Route, int Status, string Outcome, double Milliseconds, string? ProxyError);

/// <summary>A fault the soak caused: a replica's SIGKILL until its restart answered, or the database switchover.</summary>
internal sealed record SoakFault(string Kind, string Target, TimeSpan Start, TimeSpan End);

/// <summary>A call the load was told ran (<c>200 succeeded</c>) or is held (<c>202</c>), with its line in the ledger.</summary>
internal sealed record SoakCall(Guid CallId, string Tenant, Guid Session, Guid? ApprovalId);

/// <summary>
/// The soak: two replicas (separate processes) over one database and one workspaces folder, behind YARP; users of
/// several tenants send mixed traffic through the proxy while a replica is SIGKILLed and restarted on a schedule and
/// the database switches over; then <see cref="SoakChecks"/> reads the audit chains, the workspaces and the calls.
/// </summary>
internal sealed class SoakRun(SoakOptions options, TextWriter log)
{
    public const string Team = "dev";

    // Every allowed shell.exec appends its own line (sed's a command, a quiet script the policy classifies), so a
    // call that ran twice shows as a repeated line; asks append to approved.txt, which the policy holds for approval.
    public const string Policy = """
        default: deny
        rules:
          - tool: "fs.*"
            effect: allow
          - tool: "memory.*"
            effect: allow
          - tool: "shell.exec"
            effect: allow
            args: { command: "sed -i *" }
          - tool: "shell.exec"
            effect: ask
            args: { command: "sed -i * approved.txt" }
          - tool: "shell.exec"
            effect: deny
            args: { command: "rm *" }
            reason: "the soak's ledgers are kept"
        """;

    private readonly Stopwatch _clock = new();
    private readonly ConcurrentQueue<SoakOutcome> _outcomes = new();
    private readonly ConcurrentQueue<SoakCall> _calls = new();
    private readonly ConcurrentQueue<SoakFault> _faults = new();
    private readonly ConcurrentDictionary<Guid, string> _sessions = new();
    private long _sseEvents;
    private long _sseConnections;
    private HttpClient _http = null!;

    public static string Tenant(int index) => $"soak-{(char)('a' + index)}";

    public static string Append(string marker, string file) => $"sed -i '$a {marker}' {file}";

    /// <summary>The scripted model's rule for every turn: propose one append to the ledger, then answer once it ran.</summary>
    public static (string? Text, IReadOnlyList<(string Function, object Arguments)> Calls) ModelAnswer(JsonElement request)
    {
        var messages = request.GetProperty("messages");
        var last = messages[messages.GetArrayLength() - 1];
        return last.GetProperty("role").GetString() == "tool"
            ? ("Appended.", [])
            : (null, [("shell_exec", new { command = Append($"turn-{Guid.NewGuid():N}", "ledger.txt") })]);
    }

    public async Task<SoakReport> RunAsync(CancellationToken cancellationToken)
    {
        var loadAverageBefore = File.ReadAllText("/proc/loadavg").Trim();
        Directory.CreateDirectory(options.WorkFolder);
        var environment = ReplicaEnvironment();
        await using var a = new SoakReplica("replica-a", options.ServerDll, environment, options.WorkFolder);
        await using var b = new SoakReplica("replica-b", options.ServerDll, environment, options.WorkFolder);
        SoakReplica[] replicas = [a, b];
        log.WriteLine($"soak: migrating, then starting {a.Url} and {b.Url}");
        await a.MigrateAsync(options.MigrationsConnectionString, cancellationToken);
        // One after the other: the first creates the audit signing key and the key-encryption key the second reads.
        await a.StartAsync(cancellationToken);
        await b.StartAsync(cancellationToken);
        await using var proxy = await SoakProxy.StartAsync([a.Url, b.Url]);
        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = 512, PooledConnectionLifetime = TimeSpan.FromMinutes(1) };
        _http = new HttpClient(handler) { BaseAddress = new Uri(proxy.Url), Timeout = TimeSpan.FromMinutes(3) };
        log.WriteLine($"soak: proxy {proxy.Url}; {options.Users} users in {options.Tenants} tenants for {options.Duration}");

        _clock.Start();
        for (var t = 0; t < options.Tenants; t++)
        {
            await UntilAsync(() => SendAsync("PUT /v1/admin/policies/org", HttpMethod.Put, "/v1/admin/policies/org", Admin(t),
                new StringContent(Policy, Encoding.UTF8, "application/yaml"), cancellationToken), r => r.Status is >= 200 and < 300, cancellationToken);
        }

        using var stopLoad = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var stopApprovers = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var users = Enumerable.Range(0, options.Users).Select(i => (Index: i, Tenant: i % options.Tenants, Approver: i / options.Tenants < 2)).ToList();
        var members = users.Where(u => !u.Approver).Select(u => Task.Run(() => MemberAsync(u.Index, u.Tenant, stopLoad.Token), CancellationToken.None)).ToList();
        var approvers = users.Where(u => u.Approver).Select(u => Task.Run(() => ApproverAsync(u.Index, u.Tenant, stopApprovers.Token), CancellationToken.None)).ToList();
        var faults = Task.Run(() => FaultsAsync(replicas, stopLoad.Token), CancellationToken.None);

        await Task.Delay(options.Duration, cancellationToken);
        log.WriteLine($"soak: load stops at {_clock.Elapsed:mm\\:ss}; draining approvals");
        await stopLoad.CancelAsync();
        await Task.WhenAll(members);
        await faults;
        var loadEnded = _clock.Elapsed;
        await using var checks = new SoakChecks(options, _http, Admin);
        await checks.DrainAsync(Enumerable.Range(0, options.Tenants).Select(Tenant).ToArray(), TimeSpan.FromMinutes(3), cancellationToken);
        await stopApprovers.CancelAsync();
        await Task.WhenAll(approvers);
        var drained = _clock.Elapsed;
        var loadAverageAfter = File.ReadAllText("/proc/loadavg").Trim();
        log.WriteLine($"soak: drained at {drained:mm\\:ss}; checking");

        return await checks.CheckAsync(new SoakObservations(
            [.. _outcomes], [.. _calls], [.. _faults.OrderBy(f => f.Start)], _sessions.ToDictionary(),
            Interlocked.Read(ref _sseConnections), Interlocked.Read(ref _sseEvents), loadEnded, drained,
            loadAverageBefore, loadAverageAfter), cancellationToken);
    }

    private Dictionary<string, string> ReplicaEnvironment() => new()
    {
        ["ASPNETCORE_ENVIRONMENT"] = "Production",
        ["ConnectionStrings__Harness"] = options.ConnectionString,
        ["Authentication__Authority"] = options.Authority,
        ["Authentication__Audience"] = options.Audience,
        ["Authentication__RequireHttpsMetadata"] = "false",
        ["Harness__MigrateOnStart"] = "false",
        ["Harness__WorkspacesPath"] = Path.Combine(options.WorkFolder, "workspaces"),
        ["Harness__PoliciesPath"] = Path.Combine(options.WorkFolder, "policies"),
        ["Harness__Audit__SigningKeyPath"] = Path.Combine(options.WorkFolder, "audit-signing-key.pem"),
        ["Harness__Audit__GenerateSigningKey"] = "true",
        ["Harness__Model__Endpoint"] = options.ModelEndpoint,
        ["Harness__Model__ApiKey"] = "soak-key",
        ["Harness__Model__Id"] = "scripted-model",
        // A killed replica's call is settled within seconds rather than the production minute, so its session moves on.
        ["Harness__Recovery__LeaseDuration"] = "00:00:15",
        ["Harness__Recovery__SweepInterval"] = "00:00:02",
        ["Harness__Agent__RecoveryInterval"] = "00:00:05",
        ["Harness__Approvals__PollInterval"] = "00:00:01",
        ["Logging__LogLevel__Default"] = "Warning",
    };

    private string Admin(int tenant) =>
        options.Token("soak-admin", Tenant(tenant), [Team], ["harness.admin", "harness.auditor"]);

    private async Task FaultsAsync(SoakReplica[] replicas, CancellationToken stop)
    {
        var schedule = new List<(TimeSpan At, Func<Task> Run)>();
        for (var k = 1; k * options.KillEvery < options.Duration; k++)
        {
            var replica = replicas[(k - 1) % replicas.Length];
            schedule.Add((k * options.KillEvery, async () =>
            {
                var start = _clock.Elapsed;
                replica.Kill();
                log.WriteLine($"soak: {start:mm\\:ss} SIGKILL {replica.Name}");
                await replica.StartAsync(CancellationToken.None);
                _faults.Enqueue(new SoakFault("kill", replica.Name, start, _clock.Elapsed));
                log.WriteLine($"soak: {_clock.Elapsed:mm\\:ss} {replica.Name} answers again");
            }));
        }

        if (options.FailoverAt is { } failoverAt && options.PatroniFolder is { } folder)
        {
            schedule.Add((failoverAt, async () =>
            {
                var start = _clock.Elapsed;
                log.WriteLine($"soak: {start:mm\\:ss} database switchover");
                var leader = await RunScriptAsync("failover", folder);
                _faults.Enqueue(new SoakFault("failover", leader, start, _clock.Elapsed));
                log.WriteLine($"soak: {_clock.Elapsed:mm\\:ss} {leader} is the primary");
            }));
        }

        await Task.WhenAll(schedule.Select(async s =>
        {
            var wait = s.At - _clock.Elapsed;
            try
            {
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, stop);
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }

            await s.Run();
        }));
    }

    private async Task<string> RunScriptAsync(string command, string folder)
    {
        var start = new ProcessStartInfo(Path.Combine(options.RepositoryRoot, "scripts", "patroni-cluster.sh"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(command);
        start.ArgumentList.Add(folder);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"patroni-cluster.sh {command} exited {process.ExitCode}: {await stderr}");
        }

        return (await stdout).Trim();
    }

    private async Task MemberAsync(int index, int tenant, CancellationToken stop)
    {
        var tenantId = Tenant(tenant);
        var token = options.Token($"member{index:D2}", tenantId, [Team], []);
        var random = new Random(index);
        try
        {
            var created = await UntilAsync(() => SendAsync("POST /v1/sessions", HttpMethod.Post, "/v1/sessions", token, null, stop), r => r.Status == 201, stop);
            var session = created.Body!.Value.GetProperty("id").GetGuid();
            _sessions[session] = tenantId;
            foreach (var file in (string[])["ledger.txt", "approved.txt"])
            {
                // sed appends after the last line: each ledger starts with one.
                await UntilAsync(() => CallAsync(token, session, "fs.write", new { path = file, content = $"{file}\n" }, stop),
                    r => r.Outcome == "succeeded", stop);
            }

            if (index % 4 == 0)
            {
                _ = Task.Run(() => ListenAsync(token, session, stop), CancellationToken.None);
            }

            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(Think(random), stop);
                var pick = random.Next(100);
                if (pick < 30)
                {
                    var r = await CallAsync(token, session, "shell.exec", new { command = Append($"call-{Guid.NewGuid():N}", "ledger.txt") }, stop);
                    Remember(r, tenantId, session);
                }
                else if (pick < 40)
                {
                    await CallAsync(token, session, "shell.exec", new { command = "rm -f ledger.txt" }, stop);
                }
                else if (pick < 50)
                {
                    var r = await CallAsync(token, session, "shell.exec", new { command = Append($"ask-{Guid.NewGuid():N}", "approved.txt") }, stop);
                    Remember(r, tenantId, session);
                }
                else if (pick < 65)
                {
                    await SendAsync("POST /v1/sessions/{id}/messages", HttpMethod.Post, $"/v1/sessions/{session}/messages", token,
                        JsonContent.Create(new { content = "Append a line to the ledger." }), stop);
                }
                else if (pick < 80)
                {
                    await SendAsync("POST /v1/memory/{ns}/items", HttpMethod.Post, $"/v1/memory/team:{Team}/items", token,
                        JsonContent.Create(new { content = $"member{index:D2} noted release step {random.Next(1000)} of the soak" }), stop);
                }
                else if (pick < 90)
                {
                    await SendAsync("POST /v1/memory/{ns}/search", HttpMethod.Post, $"/v1/memory/team:{Team}/search", token,
                        JsonContent.Create(new { query = "release step of the soak", k = 5 }), stop);
                }
                else if (pick < 95)
                {
                    await CallAsync(token, session, "fs.read", new { path = "ledger.txt" }, stop);
                }
                else
                {
                    await SendAsync("GET /v1/sessions/{id}", HttpMethod.Get, $"/v1/sessions/{session}", token, null, stop);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    private void Remember(Response response, string tenant, Guid session)
    {
        if (response.Body is { } body && response.Outcome is "succeeded" or "pending_approval")
        {
            _calls.Enqueue(new SoakCall(body.GetProperty("id").GetGuid(), tenant, session,
                body.TryGetProperty("approvalId", out var approval) && approval.ValueKind == JsonValueKind.String ? approval.GetGuid() : null));
        }
    }

    private async Task ApproverAsync(int index, int tenant, CancellationToken stop)
    {
        var token = options.Token($"approver{index:D2}", Tenant(tenant), [Team], ["harness.approver"]);
        var random = new Random(index);
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(Think(random), stop);
                var pending = await SendAsync("GET /v1/approvals", HttpMethod.Get, "/v1/approvals?status=pending", token, null, stop);
                if (pending.Body is not { } list || !list.TryGetProperty("approvals", out var approvals))
                {
                    continue;
                }

                foreach (var approval in approvals.EnumerateArray().OrderBy(_ => random.Next()).Take(5))
                {
                    await SendAsync("POST /v1/approvals/{id}/decision", HttpMethod.Post, $"/v1/approvals/{approval.GetProperty("id").GetGuid()}/decision", token,
                        JsonContent.Create(new { approve = true, comment = "soak" }), stop);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    private async Task ListenAsync(string token, Guid session, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            var clock = Stopwatch.StartNew();
            var at = _clock.Elapsed;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/sessions/{session}/events");
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, stop);
                Record(at, "GET /v1/sessions/{id}/events", (int)response.StatusCode, response.IsSuccessStatusCode ? "stream" : $"{(int)response.StatusCode}",
                    clock.Elapsed, ProxyError(response));
                if (response.IsSuccessStatusCode)
                {
                    Interlocked.Increment(ref _sseConnections);
                    using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(stop));
                    while (await reader.ReadLineAsync(stop) is { } line)
                    {
                        if (line.StartsWith("data: ", StringComparison.Ordinal))
                        {
                            Interlocked.Increment(ref _sseEvents);
                        }
                    }
                }
            }
            catch (Exception e) when (e is HttpRequestException or IOException && !stop.IsCancellationRequested)
            {
                // The replica holding the stream died: the listener reconnects, as a browser's EventSource does.
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }

            try
            {
                await Task.Delay(1000, stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private TimeSpan Think(Random random) =>
        options.ThinkMin + TimeSpan.FromMilliseconds(random.NextDouble() * (options.ThinkMax - options.ThinkMin).TotalMilliseconds);

    private sealed record Response(int Status, string Outcome, JsonElement? Body);

    private Task<Response> CallAsync(string token, Guid session, string tool, object arguments, CancellationToken stop) =>
        SendAsync("POST /v1/sessions/{id}/tool-calls", HttpMethod.Post, $"/v1/sessions/{session}/tool-calls", token,
            JsonContent.Create(new { tool, arguments }), stop);

    private async Task<Response> SendAsync(string route, HttpMethod method, string path, string token, HttpContent? content, CancellationToken stop)
    {
        var at = _clock.Elapsed;
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(method, path) { Content = content };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        try
        {
            using var response = await _http.SendAsync(request, stop);
            var text = await response.Content.ReadAsStringAsync(stop);
            JsonElement? body = text.StartsWith('{') ? JsonDocument.Parse(text).RootElement.Clone() : null;
            var outcome = body is { } json && json.TryGetProperty("code", out var code) && code.ValueKind == JsonValueKind.String ? code.GetString()!
                : body is { } b && b.TryGetProperty("status", out var status) && status.ValueKind == JsonValueKind.String ? status.GetString()!
                : $"{(int)response.StatusCode}";
            Record(at, route, (int)response.StatusCode, outcome, clock.Elapsed, ProxyError(response));
            return new Response((int)response.StatusCode, outcome, body);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException && !stop.IsCancellationRequested)
        {
            // The proxy's connection to the replica broke after the response had started (a SIGKILL mid-answer).
            Record(at, route, 0, $"connection lost ({e.GetType().Name})", clock.Elapsed, "ResponseAborted");
            return new Response(0, "connection lost", null);
        }
    }

    private void Record(TimeSpan at, string route, int status, string outcome, TimeSpan took, string? proxyError) =>
        _outcomes.Enqueue(new SoakOutcome(at, route, status, outcome, took.TotalMilliseconds, proxyError));

    private static string? ProxyError(HttpResponseMessage response) =>
        response.Headers.TryGetValues(SoakProxy.ErrorHeader, out var values) ? values.First() : null;

    private static async Task<Response> UntilAsync(Func<Task<Response>> send, Func<Response, bool> done, CancellationToken stop)
    {
        while (true)
        {
            var response = await send();
            if (done(response))
            {
                return response;
            }

            await Task.Delay(1000, stop);
        }
    }
}
