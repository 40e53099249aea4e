using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Approvals;

/// <summary>The tenant's webhook: signed deliveries of waiting and decided approvals, retried, logged.</summary>
public sealed partial class ApprovalRoutingTests
{
    private const string Secret = "whsec-test-4f1c2b9e8a7d6c5b";

    /// <summary>A receiver on loopback that answers 500 to the first request and 200 to the rest, keeping each.</summary>
    private sealed class Receiver : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly SemaphoreSlim _arrived = new(0);
        private readonly bool _failFirst;
        private int _count;

        public Receiver(int? port = null, bool failFirst = true)
        {
            _failFirst = failFirst;
            port ??= FreePort();
            Url = UrlOf(port.Value);
            _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            _listener.Start();
            _ = Task.Run(ServeAsync);
        }

        public string Url { get; }

        public static string UrlOf(int port) => $"http://127.0.0.1:{port}/hooks/harness";

        public static int FreePort()
        {
            using var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            return ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        public ConcurrentQueue<(int Status, Dictionary<string, string> Headers, string Body)> Requests { get; } = new();

        private async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }

                using var reader = new StreamReader(context.Request.InputStream, Encoding.UTF8);
                var body = await reader.ReadToEndAsync();
                var status = Interlocked.Increment(ref _count) == 1 && _failFirst ? 500 : 200;
                var headers = context.Request.Headers.AllKeys.ToDictionary(k => k!, k => context.Request.Headers[k]!, StringComparer.OrdinalIgnoreCase);
                Requests.Enqueue((status, headers, body));
                context.Response.StatusCode = status;
                context.Response.Close();
                _arrived.Release();
            }
        }

        /// <summary>Waits (up to 15 s) for a request whose body matches, and returns the first that does.</summary>
        public async Task<(int Status, Dictionary<string, string> Headers, JsonElement Body, string Raw)> WaitForAsync(Func<JsonElement, bool> match, int skip = 0)
        {
            var deadline = DateTime.UtcNow.AddSeconds(15);
            while (true)
            {
                var found = Requests.Where(r => match(JsonDocument.Parse(r.Body).RootElement)).Skip(skip).FirstOrDefault();
                if (found.Body is not null)
                {
                    return (found.Status, found.Headers, JsonDocument.Parse(found.Body).RootElement.Clone(), found.Body);
                }

                Assert.True(DateTime.UtcNow < deadline, $"No matching webhook request; received {Requests.Count}.");
                await _arrived.WaitAsync(TimeSpan.FromMilliseconds(200));
            }
        }

        public void Dispose()
        {
            _listener.Close();
            _arrived.Dispose();
        }
    }

    // What a receiver does: recompute HMAC-SHA256(secret, "<timestamp>.<body>") and compare in constant time.
    private static void AssertSigned(Dictionary<string, string> headers, string body)
    {
        var timestamp = long.Parse(headers["X-Harness-Timestamp"], CultureInfo.InvariantCulture);
        Assert.InRange(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - timestamp, -5, 60);
        var expected = "v1=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), Encoding.UTF8.GetBytes($"{timestamp}.{body}")));
        Assert.True(CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(headers["X-Harness-Signature"])),
            $"signature {headers["X-Harness-Signature"]} is not {expected}");
    }

    private HttpClient HookAdmin() => app.ClientFor("ada", HookTenant, ["ops"], [HarnessRoles.Admin]);

    [Fact]
    public async Task The_webhook_hears_a_waiting_and_a_decided_call_signed_retried_after_a_500_and_logged()
    {
        using var receiver = new Receiver();
        using var admin = HookAdmin();
        var set = await (await admin.PutAsJsonAsync("/v1/admin/webhook", new { url = receiver.Url, secret = Secret })).JsonAsync(HttpStatusCode.OK);
        Assert.False(set.TryGetProperty("secret", out _));
        Assert.True(set.GetProperty("secretSet").GetBoolean());

        using var requester = app.ClientFor("rita", HookTenant, ["web"]);
        using var approver = app.ClientFor("anna", HookTenant, ["web"], [HarnessRoles.Approver]);
        var (session, call, approval) = await AskAsync(requester, "plain/hook.md");
        bool IsPending(JsonElement b) => b.GetProperty("type").GetString() == "approval.pending" && b.GetProperty("approval").GetProperty("id").GetGuid() == approval;

        // The first attempt is answered 500; the same delivery comes again, signed anew, and is answered 200.
        var first = await receiver.WaitForAsync(IsPending);
        var retried = await receiver.WaitForAsync(IsPending, skip: 1);
        Assert.Equal((500, 200), (first.Status, retried.Status));
        Assert.Equal(first.Headers["X-Harness-Delivery"], retried.Headers["X-Harness-Delivery"]);
        Assert.Equal("approval.pending", first.Headers["X-Harness-Event"]);
        AssertSigned(first.Headers, first.Raw);
        AssertSigned(retried.Headers, retried.Raw);
        Assert.Equal("rita", retried.Body.GetProperty("approval").GetProperty("requestedBy").GetString());
        Assert.Equal("fs.write", retried.Body.GetProperty("approval").GetProperty("tool").GetString());
        // No arguments unless the tenant opts in: not the content, not the preview.
        Assert.False(retried.Body.TryGetProperty("arguments", out _));
        Assert.False(retried.Body.TryGetProperty("preview", out _));
        Assert.False(retried.Body.TryGetProperty("reason", out _));
        Assert.DoesNotContain("reviewed", retried.Raw);

        await (await VoteAsync(approver, approval, true)).JsonAsync(HttpStatusCode.OK);
        var decided = await receiver.WaitForAsync(b => b.GetProperty("type").GetString() == "approval.decided" && b.GetProperty("approval").GetProperty("id").GetGuid() == approval);
        AssertSigned(decided.Headers, decided.Raw);
        Assert.Equal("approved", decided.Body.GetProperty("approval").GetProperty("status").GetString());
        Assert.Equal(["anna"], decided.Body.GetProperty("approval").GetProperty("approvals").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal("succeeded", await requester.WaitForCallStatusAsync(session, call, "succeeded"));

        // The log says what happened to each delivery.
        var log = await (await admin.GetAsync("/v1/admin/webhook/deliveries")).JsonAsync(HttpStatusCode.OK);
        var pending = log.GetProperty("deliveries").EnumerateArray().Single(d => d.GetProperty("id").GetString() == first.Headers["X-Harness-Delivery"]);
        Assert.Equal("delivered", pending.GetProperty("status").GetString());
        Assert.Equal(2, pending.GetProperty("attempts").GetInt32());
        Assert.Equal([500, 200], pending.GetProperty("log").EnumerateArray().Select(a => a.GetProperty("statusCode").GetInt32()));

        // The secret is nowhere in the database in clear, nor in the audit chain.
        Assert.Equal(0, await app.CountAsync("SELECT count(*) FROM tenant_webhooks WHERE position(convert_to($1, 'UTF8') in secret_ciphertext) > 0", Secret));
        Assert.Equal(0, await app.CountAsync("SELECT count(*) FROM audit_events WHERE payload::text LIKE '%' || $1 || '%'", Secret));
        Assert.Equal(1, await app.CountAsync("SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = 'webhook.configured'", HookTenant));
        Assert.False((await (await admin.GetAsync("/v1/admin/webhook")).JsonAsync(HttpStatusCode.OK)).TryGetProperty("secret", out _));

        // An expiry is a decision too.
        var (_, _, expiring) = await AskAsync(requester, "short/hook.md");
        var expired = await receiver.WaitForAsync(b => b.GetProperty("type").GetString() == "approval.decided" && b.GetProperty("approval").GetProperty("id").GetGuid() == expiring);
        AssertSigned(expired.Headers, expired.Raw);
        Assert.Equal("expired", expired.Body.GetProperty("approval").GetProperty("status").GetString());

        // A tenant that opts in receives the arguments and the preview.
        (await admin.PutAsJsonAsync("/v1/admin/webhook", new { url = receiver.Url, secret = Secret, includeArguments = true })).EnsureSuccessStatusCode();
        var (_, _, withArguments) = await AskAsync(requester, "plain/hook-arguments.md");
        var full = await receiver.WaitForAsync(b => b.GetProperty("approval").GetProperty("id").GetGuid() == withArguments);
        AssertSigned(full.Headers, full.Raw);
        Assert.Equal("reviewed", full.Body.GetProperty("arguments").GetProperty("content").GetString());
        Assert.True(full.Body.TryGetProperty("preview", out _));
        Assert.False(full.Body.TryGetProperty("argumentsOmitted", out _));

        // Arguments too large to send on every attempt are left out, and the body says where they are.
        var (_, _, large) = await AskAsync(requester, "plain/hook-large.md", new string('x', 200_000));
        var capped = await receiver.WaitForAsync(b => b.GetProperty("approval").GetProperty("id").GetGuid() == large);
        AssertSigned(capped.Headers, capped.Raw);
        Assert.False(capped.Body.TryGetProperty("arguments", out _));
        Assert.False(capped.Body.TryGetProperty("preview", out _));
        Assert.Contains("GET /v1/approvals", capped.Body.GetProperty("argumentsOmitted").GetString());
        Assert.InRange(capped.Raw.Length, 1, 8 * 1024);
    }

    [Fact]
    public async Task A_delivery_nobody_answered_stays_in_the_outbox_and_arrives_once_the_receiver_is_up()
    {
        var port = Receiver.FreePort();
        using var admin = app.ClientFor("ada", DownTenant, ["ops"], [HarnessRoles.Admin]);
        (await admin.PutAsJsonAsync("/v1/admin/webhook", new { url = Receiver.UrlOf(port), secret = Secret })).EnsureSuccessStatusCode();
        using var requester = app.ClientFor("rita", DownTenant, ["web"]);
        var (_, _, approval) = await AskAsync(requester, "plain/down.md");

        // Nothing listens yet: the attempt fails without an answer, and the log says so.
        JsonElement failed = default;
        for (var i = 0; i < 100 && failed.ValueKind == JsonValueKind.Undefined; i++)
        {
            var log = await (await admin.GetAsync("/v1/admin/webhook/deliveries")).JsonAsync(HttpStatusCode.OK);
            failed = log.GetProperty("deliveries").EnumerateArray().SelectMany(d => d.GetProperty("log").EnumerateArray()).FirstOrDefault();
            await Task.Delay(failed.ValueKind == JsonValueKind.Undefined ? 100 : 0);
        }

        Assert.True(!failed.TryGetProperty("statusCode", out var code) || code.ValueKind == JsonValueKind.Null, failed.GetRawText());
        Assert.StartsWith("The request failed", failed.GetProperty("error").GetString());

        using var receiver = new Receiver(port, failFirst: false);
        var arrived = await receiver.WaitForAsync(b => b.GetProperty("approval").GetProperty("id").GetGuid() == approval);
        AssertSigned(arrived.Headers, arrived.Raw);
        // The receiver has the body before the dispatcher records its answer: wait for the record.
        JsonElement[] delivered = [];
        for (var i = 0; i < 100 && delivered.Length == 0; i++)
        {
            delivered = [.. (await (await admin.GetAsync("/v1/admin/webhook/deliveries?status=delivered")).JsonAsync(HttpStatusCode.OK))
                .GetProperty("deliveries").EnumerateArray()];
            await Task.Delay(delivered.Length == 0 ? 50 : 0);
        }

        Assert.True(Assert.Single(delivered).GetProperty("attempts").GetInt32() >= 2);
        var record = delivered[0];
        Assert.Equal(200, record.GetProperty("lastStatusCode").GetInt32());
    }

    [Theory]
    [InlineData("http://10.0.0.7/hook", "invalid_webhook_url")]
    [InlineData("https://169.254.169.254/latest/meta-data", "invalid_webhook_url")]
    [InlineData("https://[fd00::1]/hook", "invalid_webhook_url")]
    [InlineData("https://192.168.1.10/hook", "invalid_webhook_url")]
    [InlineData("http://hooks.example.com/hook", "invalid_webhook_url")]
    [InlineData("http://127.0.0.2/hook", "invalid_webhook_url")]
    [InlineData("ftp://hooks.example.com/hook", "invalid_webhook_url")]
    [InlineData("https://user:pw@hooks.example.com/hook", "invalid_webhook_url")]
    [InlineData("/relative", "invalid_webhook_url")]
    public async Task Refuses_webhook_urls_that_are_not_https_or_reach_private_networks(string url, string code)
    {
        using var admin = app.ClientFor("ada", "routing-urls", ["ops"], [HarnessRoles.Admin]);

        await (await admin.PutAsJsonAsync("/v1/admin/webhook", new { url, secret = Secret })).ProblemAsync(HttpStatusCode.BadRequest, code);
        await (await admin.GetAsync("/v1/admin/webhook")).ProblemAsync(HttpStatusCode.NotFound, "webhook_not_configured");
    }

    [Fact]
    public async Task Only_admins_set_a_webhook_and_its_secret_must_be_long_enough()
    {
        using var admin = app.ClientFor("ada", "routing-urls", ["ops"], [HarnessRoles.Admin]);
        using var approver = app.ClientFor("anna", "routing-urls", ["web"], [HarnessRoles.Approver]);

        await (await admin.PutAsJsonAsync("/v1/admin/webhook", new { url = "https://hooks.example.com/h", secret = "short" }))
            .ProblemAsync(HttpStatusCode.BadRequest, "invalid_webhook_secret");
        await (await approver.PutAsJsonAsync("/v1/admin/webhook", new { url = "https://hooks.example.com/h", secret = Secret }))
            .ProblemAsync(HttpStatusCode.Forbidden);
        await (await approver.GetAsync("/v1/admin/webhook/deliveries")).ProblemAsync(HttpStatusCode.Forbidden);
        await (await admin.GetAsync("/v1/admin/webhook/deliveries?limit=0")).ProblemAsync(HttpStatusCode.BadRequest, "invalid_limit");
    }
}
