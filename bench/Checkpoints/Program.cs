using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using HarnessServer.Sandbox;
using HarnessServer.Sessions;

// Workspaces, their modes and the sandbox are Linux's.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

// Checkpoint cost against workspace size (scripts: bench/run-checkpoints.sh). Two parts, each against its baseline
// in the same run: the checkpoint step alone, in this process, in an empty workspace and in workspaces of 20,000 and
// 100,000 generated small files; and, against a running server, `shell.exec true` and `fs.write` end to end over HTTP
// in sessions whose workspaces hold the same files, with a rollback of the write checked byte for byte and timed.
var output = args.ElementAtOrDefault(0) ?? "bench/results/checkpoints.md";
var baseUrl = args.ElementAtOrDefault(1);
var workspacesPath = args.ElementAtOrDefault(2);
var calls = int.Parse(Environment.GetEnvironmentVariable("BENCH_CALLS") ?? "40", CultureInfo.InvariantCulture);
var sizes = (Environment.GetEnvironmentVariable("BENCH_SIZES") ?? "0,20000,100000").Split(',').Select(int.Parse).ToArray();
var racySettle = TimeSpan.FromSeconds(2.2);

var report = new StringBuilder();
report.AppendLine("# Workspace checkpoints against workspace size");
report.AppendLine();
report.AppendLine($"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores (shared with other builds; load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]} at the start), {calls} timed repetitions per row after a first (cold) one and a wait of {racySettle.TotalSeconds} s so no file is still within the index's racy window. Generated files: 100 per folder, two folder levels, 16-80 bytes each.");
report.AppendLine();

// Part 1: the checkpoint step alone.
report.AppendLine("## The checkpoint step alone (in process)");
report.AppendLine();
report.AppendLine("| workspace | cold capture ms (reads every file) | walk with stat only p50 ms | capture p50 ms | capture p99 ms | p50 / empty | capture after one fs.write p50 ms | restore ms (exact) |");
report.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
var scratch = Path.GetFullPath(".data/bench-checkpoints");
if (Directory.Exists(scratch))
{
    Directory.Delete(scratch, recursive: true);
}

var root = new WorkspaceRoot(scratch, new SandboxOptions());
var user = TenantSandboxUsers.UserAt(300_000, 1);
double? emptyP50 = null;
foreach (var size in sizes)
{
    var checkpoints = new WorkspaceCheckpoints(root);
    var session = Guid.CreateVersion7().ToString();
    root.Create("bench", session, user).Dispose();
    var folder = Path.Combine(scratch, "bench", session);
    Generate(folder, size);
    var cold = Time(() => Capture(checkpoints, session));
    Thread.Sleep(racySettle);
    Capture(checkpoints, session);
    var walk = Percentiles(calls, () => Time(() =>
    {
        using var workspace = root.Open("bench", session, user);
        foreach (var _ in workspace.Walk((_, _) => false))
        {
        }
    }));
    var warm = Percentiles(calls, () => Time(() => Capture(checkpoints, session)));
    emptyP50 ??= warm.P50;
    var written = Percentiles(calls, () =>
    {
        using (var workspace = root.Open("bench", session, user))
        {
            workspace.Write("d0/e0/written.txt", Guid.NewGuid().ToString());
        }

        return Time(() => Capture(checkpoints, session));
    });

    // Restore: the checkpoint before one more write, then back; the workspace must be what it was, byte for byte.
    var before = Picture(folder);
    var checkpoint = Capture(checkpoints, session);
    using (var workspace = root.Open("bench", session, user))
    {
        workspace.Write("d0/e0/written.txt", "changed after the checkpoint");
    }

    var restore = Time(() => checkpoints.Restore("bench", session, checkpoint, user));
    var exact = Picture(folder) == before;
    report.AppendLine($"| {size:N0} files | {cold:F1} | {walk.P50:F1} | {warm.P50:F2} | {warm.P99:F2} | {warm.P50 / emptyP50:F2}x | {written.P50:F2} | {restore:F0} ({(exact ? "exact" : "**differs**")}) |");
    Console.WriteLine($"step, {size} files: cold {cold:F1} ms, walk {walk.P50:F1}, capture p50 {warm.P50:F2} p99 {warm.P99:F2}, after a write {written.P50:F2}, restore {restore:F0} ms exact={exact}");
}

Directory.Delete(scratch, recursive: true);

// Part 2: end to end over HTTP.
if (baseUrl is not null && workspacesPath is not null)
{
    using var http = new HttpClient { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromMinutes(5) };
    var token = (await (await http.PostAsJsonAsync("/dev/token", new { user = "bench", tenant = "bench", teams = new[] { "load" }, roles = new[] { "harness.admin" } }))
        .Content.ReadFromJsonAsync<JsonElement>()).GetProperty("accessToken").GetString();
    http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
    var policy = """
        default: deny
        rules:
          - tool: "fs.write"
            effect: allow
          - tool: "shell.exec"
            effect: allow
            args: { command: ["true"] }
        """;
    (await http.PutAsync("/v1/admin/policies/org", new StringContent(policy, Encoding.UTF8, "application/yaml"))).EnsureSuccessStatusCode();

    report.AppendLine();
    report.AppendLine("## End to end over HTTP (one client, one session per workspace, server in Release)");
    report.AppendLine();
    report.AppendLine("| workspace | first call ms (cold index) | `shell.exec true` p50 ms | p99 ms | p50 / empty | `fs.write` one file p50 ms | p50 / empty | rollback of that write ms |");
    report.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    double? emptyShell = null, emptyWrite = null;
    foreach (var size in sizes)
    {
        var session = (await (await http.PostAsync("/v1/sessions", null)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        var folder = Path.Combine(Path.GetFullPath(workspacesPath), "bench", session);
        Generate(folder, size);
        GiveToOwner(folder);
        var first = await TimeAsync(() => CallAsync(session, "shell.exec", new { command = "true" }));
        Thread.Sleep(racySettle);
        await CallAsync(session, "shell.exec", new { command = "true" });
        var shell = await PercentilesAsync(calls, () => TimeAsync(() => CallAsync(session, "shell.exec", new { command = "true" })));
        var write = await PercentilesAsync(calls, () => TimeAsync(() => CallAsync(session, "fs.write", new { path = "d0/e0/written.txt", content = Guid.NewGuid().ToString() })));
        emptyShell ??= shell.P50;
        emptyWrite ??= write.P50;

        // The checkpoint taken before the last write: rolling back to it must give back the workspace as it was.
        var before = Picture(folder);
        var callId = await CallAsync(session, "fs.write", new { path = "d0/e0/written.txt", content = "the write to roll back" });
        var checkpoints = await http.GetFromJsonAsync<JsonElement>($"/v1/sessions/{session}/checkpoints");
        var checkpoint = checkpoints.EnumerateArray().Single(c => c.GetProperty("followedBy").GetProperty("id").GetString() == callId).GetProperty("id").GetString();
        var rollback = await TimeAsync(async () =>
        {
            (await http.PostAsJsonAsync($"/v1/sessions/{session}/rollback", new { checkpoint })).EnsureSuccessStatusCode();
            return "";
        });
        var exact = Picture(folder) == before;
        report.AppendLine($"| {size:N0} files | {first:F0} | {shell.P50:F1} | {shell.P99:F1} | {shell.P50 / emptyShell:F2}x | {write.P50:F1} | {write.P50 / emptyWrite:F2}x | {rollback:F0} ({(exact ? "exact" : "**differs**")}) |");
        Console.WriteLine($"http, {size} files: first {first:F0} ms, shell p50 {shell.P50:F1} p99 {shell.P99:F1}, write p50 {write.P50:F1}, rollback {rollback:F0} ms exact={exact}");
    }

    async Task<string> CallAsync(string session, string tool, object arguments)
    {
        var response = await http.PostAsJsonAsync($"/v1/sessions/{session}/tool-calls", new { tool, arguments });
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        if (!response.IsSuccessStatusCode || body.GetProperty("status").GetString() != "succeeded")
        {
            throw new InvalidOperationException($"{tool} answered {(int)response.StatusCode}: {body}");
        }

        return body.GetProperty("id").GetString()!;
    }
}

Directory.CreateDirectory(Path.GetDirectoryName(output)!);
await File.WriteAllTextAsync(output, report.ToString());
return;

string Capture(WorkspaceCheckpoints checkpoints, string session)
{
    using var workspace = root.Open("bench", session, user);
    return checkpoints.Capture("bench", workspace).Hash;
}

static void Generate(string folder, int count)
{
    var random = new Random(count);
    for (var i = 0; i < count; i++)
    {
        var directory = Path.Combine(folder, $"d{i / 1000}", $"e{i / 100 % 10}");
        if (i % 100 == 0)
        {
            Directory.CreateDirectory(directory);
        }

        var content = new byte[random.Next(16, 81)];
        random.NextBytes(content);
        File.WriteAllBytes(Path.Combine(directory, $"f{i}.txt"), content);
    }
}

// Generated as root: hand every file to the workspace folder's owner, as the server's own writes would be.
static void GiveToOwner(string folder)
{
    var owner = new DirectoryInfo(folder);
    var stat = Process.Start(new ProcessStartInfo("stat", ["-c", "%u:%g", folder]) { RedirectStandardOutput = true })!;
    var ids = stat.StandardOutput.ReadToEnd().Trim();
    stat.WaitForExit();
    Process.Start("chown", ["-R", ids, owner.FullName])!.WaitForExit();
}

// Every path with its kind, permission bits and the SHA-256 of its content.
static string Picture(string folder)
{
    var lines = new List<string>();
    foreach (var path in Directory.EnumerateFileSystemEntries(folder, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
    {
        var relative = Path.GetRelativePath(folder, path);
        lines.Add(Directory.Exists(path) ? $"{relative} dir {File.GetUnixFileMode(path)}"
            : $"{relative} {File.GetUnixFileMode(path)} {Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)))}");
    }

    lines.Sort(StringComparer.Ordinal);
    return string.Join('\n', lines);
}

static double Time(Action action)
{
    var clock = Stopwatch.StartNew();
    action();
    return clock.Elapsed.TotalMilliseconds;
}

static async Task<double> TimeAsync(Func<Task<string>> action)
{
    var clock = Stopwatch.StartNew();
    await action();
    return clock.Elapsed.TotalMilliseconds;
}

static (double P50, double P99) Percentiles(int count, Func<double> sample)
{
    var samples = Enumerable.Range(0, count).Select(_ => sample()).Order().ToArray();
    return (samples[samples.Length / 2], samples[Math.Min(samples.Length - 1, (int)(samples.Length * 0.99))]);
}

static async Task<(double P50, double P99)> PercentilesAsync(int count, Func<Task<double>> sample)
{
    var samples = new List<double>();
    for (var i = 0; i < count; i++)
    {
        samples.Add(await sample());
    }

    samples.Sort();
    return (samples[samples.Count / 2], samples[Math.Min(samples.Count - 1, (int)(samples.Count * 0.99))]);
}
