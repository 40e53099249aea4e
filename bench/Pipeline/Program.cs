using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

// End-to-end load over HTTP against a running server (scripts: bench/run-pipeline.sh). Each scenario runs the same
// number of concurrent clients for the same time as its baseline, an authenticated no-op (GET /v1/me), in one run.
var baseUrl = args.ElementAtOrDefault(0) ?? "http://127.0.0.1:5080";
var output = args.ElementAtOrDefault(1) ?? "bench/results/pipeline.md";
var clients = int.Parse(args.ElementAtOrDefault(2) ?? "32");
var seconds = double.Parse(args.ElementAtOrDefault(3) ?? "10", System.Globalization.CultureInfo.InvariantCulture);
// CPU per request is what a shared 2-core machine measures reliably: the server's and PostgreSQL's (postmaster and
// every backend), read from /proc around each scenario, when the runner names their pids.
var serverPid = int.TryParse(Environment.GetEnvironmentVariable("BENCH_SERVER_PID"), out var sp) ? sp : 0;
var postgresPid = int.TryParse(Environment.GetEnvironmentVariable("BENCH_POSTGRES_PID"), out var pp) ? pp : 0;
var only = Environment.GetEnvironmentVariable("BENCH_SCENARIOS") is { Length: > 0 } filter ? filter.Split(',') : null;
// The JIT's tiering (with dynamic PGO) takes a minute or more of load on 2 busy cores before a path runs optimised
// code: measured without a warm-up, the first 15 s of denied calls cost 3-4x the CPU of the steady state.
var warmup = double.Parse(Environment.GetEnvironmentVariable("BENCH_WARMUP_SECONDS") ?? "20", System.Globalization.CultureInfo.InvariantCulture);

using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients * 2 }) { BaseAddress = new Uri(baseUrl) };
var token = (await (await http.PostAsJsonAsync("/dev/token", new { user = "bench", tenant = "bench", teams = new[] { "load" }, roles = new[] { "harness.admin" } }))
    .Content.ReadFromJsonAsync<JsonElement>()).GetProperty("accessToken").GetString();
http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);

var policy = """
    default: deny
    rules:
      - tool: "fs.read"
        effect: allow
      - tool: "fs.write"
        effect: allow
      - tool: "shell.exec"
        effect: allow
        args: { command: ["true"] }
      - tool: "http.fetch"
        effect: deny
        reason: "bench: denied"
    """;
(await http.PutAsync("/v1/admin/policies/org", new StringContent(policy, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();

// One session per client: a session's calls are serialised by design, so sessions carry the concurrency.
var sessions = new List<string>();
for (var i = 0; i < clients; i++)
{
    var session = (await (await http.PostAsync("/v1/sessions", null)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
    (await http.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool = "fs.write", arguments = new { path = "f.txt", content = "hello" } })).EnsureSuccessStatusCode();
    sessions.Add(session);
}

// The sandbox's own floor in the same run: the bubblewrap line of bench/HarnessServer.Benchmarks' sandbox-start
// baseline (setpriv + bwrap with every namespace unshared, `true` inside), started directly by this process in a
// closed loop with the same number of clients, so `shell.exec true` is read against what a bare start costs here.
var workspace = Directory.CreateTempSubdirectory("harness-bench-bwrap-");
if (!OperatingSystem.IsLinux())
{
    throw new PlatformNotSupportedException("bubblewrap runs on Linux only.");
}

File.SetUnixFileMode(workspace.FullName, (UnixFileMode)0x1FF);
var scenarios = new (string Name, Func<int, Task<bool>> Run)[]
{
    ("baseline: GET /v1/me (authenticated no-op)", _ => SendAsync(new HttpRequestMessage(HttpMethod.Get, "/v1/me"))),
    ("denied call (http.fetch)", i => SendAsync(Call(sessions[i], "http.fetch", new { url = "https://example.com" }))),
    ("allowed fs.read", i => SendAsync(Call(sessions[i], "fs.read", new { path = "f.txt" }))),
    ("shell.exec true", i => SendAsync(Call(sessions[i], "shell.exec", new { command = "true" }))),
    ("baseline: bare setpriv + bwrap `true`, started by the benchmark", _ => BareBwrapAsync(workspace.FullName)),
};

var report = new StringBuilder();
report.AppendLine("# Tool-call pipeline, end to end over HTTP");
report.AppendLine();
report.AppendLine($"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, {clients} concurrent clients (one session each), {seconds} s per scenario after every scenario has run {warmup} s to warm up, server in Release against a local PostgreSQL 15 with fsync and synchronous_commit on. Every call below is authenticated, decided, and durably audited (2 to 3 chained events). CPU columns: milliseconds of CPU per request spent by the server process, by PostgreSQL (all its processes) and by this load generator (with the programs it started: for the bare bwrap row, the CPU of a start, without the kernel's asynchronous namespace teardown).");
report.AppendLine();
report.AppendLine("| scenario | requests/s | p50 ms | p99 ms | errors | server CPU ms/req | PostgreSQL CPU ms/req | load CPU ms/req |");
report.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
var results = new Dictionary<string, (double Rps, double P50, double P99)>();
var selected = scenarios.Where(s => only is null || only.Any(o => s.Name.StartsWith(o, StringComparison.Ordinal))).ToArray();
foreach (var (_, run) in selected)
{
    await RunAsync(run, warmup);
}

foreach (var (name, run) in selected)
{
    var cpu = CpuNow();
    var (rps, p50, p99, errors, count) = await RunAsync(run, seconds);
    var spent = CpuNow();
    var (server, postgres, load) = ((spent.Server - cpu.Server) / count, (spent.Postgres - cpu.Postgres) / count, (spent.Load - cpu.Load) / count);
    results[name] = (rps, p50, p99);
    report.AppendLine($"| {name} | {rps:F0} | {p50:F2} | {p99:F2} | {errors} | {Cpu(server)} | {Cpu(postgres)} | {load:F3} |");
    Console.WriteLine($"{name}: {rps:F0}/s p50 {p50:F2} ms p99 {p99:F2} ms errors {errors}; CPU ms/req server {Cpu(server)} postgres {Cpu(postgres)} load {load:F3}");
}

if (results.Count == scenarios.Length)
{
    var baseline = results[scenarios[0].Name];
    var denied = results[scenarios[1].Name];
    var read = results[scenarios[2].Name];
    var shell = results[scenarios[3].Name];
    var bare = results[scenarios[4].Name];
    report.AppendLine();
    report.AppendLine($"Against the baselines of this run: denied calls/s {denied.Rps / baseline.Rps:F3} of the no-op's (target >= 0.25), allowed `fs.read` {read.Rps / baseline.Rps:F3} (target >= 0.2); "
        + $"`shell.exec true` {shell.Rps:F0}/s (target >= 300 at 32 clients), p50 {shell.P50:F2} ms (target < 10 ms at 1 client), x{shell.P50 / bare.P50:F2} the bare bwrap start's p50 of {bare.P50:F2} ms (target <= x3 at 1 client).");
}

report.AppendLine();
report.AppendLine($"Load average at the end of the run (`uptime`): {File.ReadAllText("/proc/loadavg").Trim()}.");
workspace.Delete(recursive: true);

Directory.CreateDirectory(Path.GetDirectoryName(output)!);
await File.WriteAllTextAsync(output, report.ToString());
return;

string Cpu(double ms) => double.IsNaN(ms) ? "n/a" : ms.ToString("F3", System.Globalization.CultureInfo.InvariantCulture);

(double Server, double Postgres, double Load) CpuNow() => (
    serverPid == 0 ? double.NaN : ProcessCpuMs(serverPid),
    postgresPid == 0 ? double.NaN : ProcessCpuMs(postgresPid) + Directory.EnumerateDirectories("/proc")
        .Select(d => int.TryParse(Path.GetFileName(d), out var pid) ? pid : 0)
        .Where(pid => pid > 0 && StatFields(pid) is { } f && f[1] == postgresPid.ToString())
        .Sum(ProcessCpuMs),
    SelfAndChildrenCpuMs());

// This process and the children it reaped (the bare bwrap starts), fields 14-17 of /proc/self/stat.
static double SelfAndChildrenCpuMs() => StatFields(Environment.ProcessId) is { } f
    ? (long.Parse(f[11]) + long.Parse(f[12]) + long.Parse(f[13]) + long.Parse(f[14])) * 10.0
    : 0;

// utime + stime (fields 14 and 15 of /proc/<pid>/stat, in clock ticks of 10 ms); 0 for a process that has gone.
static double ProcessCpuMs(int pid) => StatFields(pid) is { } f ? (long.Parse(f[11]) + long.Parse(f[12])) * 10.0 : 0;

// The fields after the command name: [0] is the state, [1] the parent pid.
static string[]? StatFields(int pid)
{
    try
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
    }
    catch (IOException)
    {
        return null;
    }
}

HttpRequestMessage Call(string session, string tool, object arguments) =>
    new(HttpMethod.Post, $"/v1/sessions/{session}/tool-calls") { Content = JsonContent.Create(new { tool, arguments }) };

async Task<bool> SendAsync(HttpRequestMessage message)
{
    using (message)
    {
        using var response = await http.SendAsync(message);
        await response.Content.ReadAsByteArrayAsync();
        return response.IsSuccessStatusCode;
    }
}

static async Task<bool> BareBwrapAsync(string workspace) => await HarnessServer.Bench.BareBubblewrap.RunTrueAsync(workspace, 65534, 65534) == 0;

async Task<(double Rps, double P50, double P99, int Errors, int Count)> RunAsync(Func<int, Task<bool>> run, double duration)
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
            var succeeded = await run(client);
            mine.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            if (!succeeded)
            {
                Interlocked.Increment(ref errors);
            }
        }
    }));
    var all = latencies.SelectMany(l => l).Order().ToArray();
    return (all.Length / stop.Elapsed.TotalSeconds, Percentile(all, 0.50), Percentile(all, 0.99), errors, all.Length);
}

static double Percentile(double[] sorted, double p) => sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];
