using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;

namespace HarnessServer.Tests.Infrastructure;

/// <summary>
/// The built server run as <c>dotnet HarnessServer.dll</c> (a real second process that a test can SIGKILL), over the
/// fixture's database, issuer, workspaces and audit key.
/// </summary>
public sealed class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private ServerProcess(Process process, string url)
    {
        _process = process;
        Url = url;
    }

    public string Url { get; }
    public int ProcessId => _process.Id;

    /// <summary>Starts the server with the fixture's settings and <paramref name="settings"/> (environment names, <c>A__B</c>).</summary>
    public static async Task<ServerProcess> StartAsync(HarnessApplication app, IReadOnlyDictionary<string, string>? settings = null)
    {
        var url = $"http://127.0.0.1:{FreePort()}";
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "HarnessServer.dll")])
        {
            WorkingDirectory = HarnessApplication.RepositoryRoot,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment =
            {
                ["ASPNETCORE_ENVIRONMENT"] = "Production",
                ["Urls"] = url,
                ["ConnectionStrings__Harness"] = app.ApplicationConnectionString,
                ["Authentication__Authority"] = app.Issuer.Authority,
                ["Authentication__Audience"] = OidcIssuer.Audience,
                ["Authentication__RequireHttpsMetadata"] = "false",
                ["Harness__MigrateOnStart"] = "false",
                ["Harness__WorkspacesPath"] = Path.Combine(app.DataRoot, "workspaces"),
                ["Harness__PoliciesPath"] = Path.Combine(app.DataRoot, "policies"),
                ["Harness__Audit__SigningKeyPath"] = Path.Combine(app.DataRoot, "audit-signing-key.pem"),
            },
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        var process = Process.Start(start)!;
        var server = new ServerProcess(process, url);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var probe = new HttpClient { BaseAddress = new Uri(url) };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            Assert.False(process.HasExited, $"The server exited with {(process.HasExited ? process.ExitCode : 0)}: {server.Output}");
            try
            {
                if ((await probe.GetAsync("/healthz")).IsSuccessStatusCode)
                {
                    return server;
                }
            }
            catch (HttpRequestException)
            {
            }

            Assert.True(DateTime.UtcNow < deadline, $"The server did not start: {server.Output}");
            await Task.Delay(200);
        }
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public HttpClient Client(string token) => new()
    {
        BaseAddress = new Uri(Url),
        DefaultRequestHeaders = { Authorization = new AuthenticationHeaderValue("Bearer", token) },
        Timeout = TimeSpan.FromMinutes(2),
    };

    /// <summary>SIGKILL: the process gets no chance to finish anything (its sandboxes die with it).</summary>
    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    public ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Kill();
        }

        _process.Dispose();
        return ValueTask.CompletedTask;
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
