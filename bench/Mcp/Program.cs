using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using ModelContextProtocol.Client;

// An allowed tools/call over /mcp (the C# SDK's client, Streamable HTTP) against the same call on the HTTP API, in one
// run, at 1 and 32 clients (scripts: bench/run-mcp.sh). Each client has its own session; the two ways alternate in
// rounds so that a drifting machine load falls on both alike.
var baseUrl = args.ElementAtOrDefault(0) ?? "http://127.0.0.1:5080";
var output = args.ElementAtOrDefault(1) ?? "bench/results/mcp.md";
var seconds = double.Parse(args.ElementAtOrDefault(2) ?? "8", System.Globalization.CultureInfo.InvariantCulture);
var rounds = int.Parse(args.ElementAtOrDefault(3) ?? "3");
int[] clientCounts = [1, 32];
const int MaxClients = 32;

using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = MaxClients * 2 }) { BaseAddress = new Uri(baseUrl) };
var token = (await (await http.PostAsJsonAsync("/dev/token", new { user = "mcpbench", tenant = "mcpbench", teams = new[] { "load" }, roles = new[] { "harness.admin" } }))
    .Content.ReadFromJsonAsync<JsonElement>()).GetProperty("accessToken").GetString()!;
http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
(await http.PutAsync("/v1/admin/policies/org", new StringContent("""
    default: deny
    rules:
      - tool: "fs.read"
        effect: allow
      - tool: "fs.write"
        effect: allow
    """, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();

var sessions = new List<string>();
var mcp = new List<McpClient>();
for (var i = 0; i < MaxClients; i++)
{
    var session = (await (await http.PostAsync("/v1/sessions", null)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
    (await http.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.write", arguments = new { path = "f.txt", content = "hello" } })).EnsureSuccessStatusCode();
    sessions.Add(session);
    mcp.Add(await McpClient.CreateAsync(new HttpClientTransport(new HttpClientTransportOptions
    {
        Endpoint = new Uri(baseUrl + "/mcp"),
        TransportMode = HttpTransportMode.StreamableHttp,
        AdditionalHeaders = new Dictionary<string, string> { ["Authorization"] = $"Bearer {token}", ["Harness-Session"] = session },
    })));
}

var read = new Dictionary<string, object?> { ["path"] = "f.txt" };
var ways = new (string Name, Func<int, Task<bool>> Call)[]
{
    ("HTTP API: POST /v1/sessions/{id}/tool-calls fs.read", async i =>
    {
        using var response = await http.PostAsJsonAsync($"/v1/sessions/{sessions[i]}/tool-calls", new { tool = "fs.read", arguments = read });
        await response.Content.ReadAsByteArrayAsync();
        return response.IsSuccessStatusCode;
    }),
    ("MCP: tools/call fs.read", async i => (await mcp[i].CallToolAsync("fs.read", read)).IsError != true),
};

// Warm both paths (JIT tiering, pools) before anything is measured.
foreach (var (_, call) in ways)
{
    await RunAsync(call, MaxClients, 10);
}

var samples = new Dictionary<(string, int), List<double>>();
var counts = new Dictionary<(string, int), (int Calls, int Errors, double Seconds)>();
for (var round = 0; round < rounds; round++)
{
    foreach (var clients in clientCounts)
    {
        foreach (var (name, call) in round % 2 == 0 ? ways : ways.Reverse())
        {
            var (latencies, errors, elapsed) = await RunAsync(call, clients, seconds);
            var key = (name, clients);
            samples.TryAdd(key, []);
            samples[key].AddRange(latencies);
            var before = counts.GetValueOrDefault(key);
            counts[key] = (before.Calls + latencies.Count, before.Errors + errors, before.Seconds + elapsed);
        }
    }
}

var report = new StringBuilder();
report.AppendLine("# An allowed tool call over MCP against the same call on the HTTP API");
report.AppendLine();
report.AppendLine($"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores (shared; load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]} at the end), server in Release (Development, its dev issuer) over a local PostgreSQL with fsync on. " +
    $"Each client has its own session and calls `fs.read` of a 5-byte file in a loop: decided, executed and durably audited either way. " +
    $"MCP is the C# SDK client over Streamable HTTP against the stateless `/mcp`; the HTTP API is `HttpClient` posting JSON. " +
    $"{rounds} rounds of {seconds} s per way and client count, the ways alternating, after 10 s of warm-up each.");
report.AppendLine();
report.AppendLine("| clients | way | calls/s | p50 ms | p99 ms | errors |");
report.AppendLine("| ---: | --- | ---: | ---: | ---: | ---: |");
foreach (var clients in clientCounts)
{
    foreach (var (name, _) in ways)
    {
        var sorted = samples[(name, clients)].Order().ToArray();
        var (calls, errors, elapsed) = counts[(name, clients)];
        report.AppendLine($"| {clients} | {name} | {calls / elapsed:F0} | {Percentile(sorted, 0.5):F2} | {Percentile(sorted, 0.99):F2} | {errors} |");
    }
}

report.AppendLine();
var p50Http = Percentile([.. samples[(ways[0].Name, 1)].Order()], 0.5);
var p50Mcp = Percentile([.. samples[(ways[1].Name, 1)].Order()], 0.5);
var rate = (string way) => counts[(way, 32)].Calls / counts[(way, 32)].Seconds;
report.AppendLine($"At 1 client MCP's p50 is {p50Mcp - p50Http:+0.00;-0.00} ms from the HTTP API's (target: within 1 ms). " +
    $"At 32 clients MCP makes {100 * rate(ways[1].Name) / rate(ways[0].Name):F0}% of the HTTP API's calls/s (target: at least 80%).");
Directory.CreateDirectory(Path.GetDirectoryName(output)!);
await File.WriteAllTextAsync(output, report.ToString());
Console.Write(report);
return;

async Task<(List<double> Latencies, int Errors, double Seconds)> RunAsync(Func<int, Task<bool>> call, int clients, double duration)
{
    var latencies = new List<double>[clients];
    var errors = 0;
    var stop = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, clients).Select(async client =>
    {
        var mine = latencies[client] = [];
        while (stop.Elapsed.TotalSeconds < duration)
        {
            var started = Stopwatch.GetTimestamp();
            var ok = await call(client);
            mine.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            if (!ok)
            {
                Interlocked.Increment(ref errors);
            }
        }
    }));
    return ([.. latencies.SelectMany(l => l)], errors, stop.Elapsed.TotalSeconds);
}

static double Percentile(double[] sorted, double p) => sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];
