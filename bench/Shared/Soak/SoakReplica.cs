using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace HarnessServer.Soak;

/// <summary>
/// One server replica of the soak: <c>dotnet HarnessServer.dll</c> as its own process on a fixed loopback port (so the
/// proxy's destination stays the same across a kill and a restart), its output appended to a log file.
/// </summary>
internal sealed class SoakReplica : IAsyncDisposable
{
    private readonly string _dll;
    private readonly IReadOnlyDictionary<string, string> _environment;
    private readonly string _log;
    private Process? _process;

    public SoakReplica(string name, string dll, IReadOnlyDictionary<string, string> environment, string logFolder)
    {
        Name = name;
        _dll = dll;
        _environment = environment;
        _log = Path.Combine(logFolder, $"{name}.log");
        Url = $"http://127.0.0.1:{FreePort()}";
    }

    public string Name { get; }
    public string Url { get; }

    /// <summary>Starts the process and waits for <c>/healthz</c>; returns how long that took.</summary>
    public async Task<TimeSpan> StartAsync(CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        _process = Launch(new Dictionary<string, string>(_environment) { ["Urls"] = Url }, []);
        using var probe = new HttpClient { BaseAddress = new Uri(Url), Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"{Name} exited with {_process.ExitCode} while starting; see {_log}");
            }

            try
            {
                if ((await probe.GetAsync("/healthz", cancellationToken)).IsSuccessStatusCode)
                {
                    return clock.Elapsed;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{Name} did not answer /healthz within 3 minutes; see {_log}");
            }

            await Task.Delay(200, cancellationToken);
        }
    }

    /// <summary><c>HarnessServer --migrate</c> with this replica's settings and the owner's connection string; throws unless it exits 0.</summary>
    public async Task MigrateAsync(string migrationsConnectionString, CancellationToken cancellationToken)
    {
        var environment = new Dictionary<string, string>(_environment) { ["ConnectionStrings__HarnessMigrations"] = migrationsConnectionString };
        using var process = Launch(environment, ["--migrate"]);
        await process.WaitForExitAsync(cancellationToken);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"--migrate exited with {process.ExitCode}; see {_log}");
        }
    }

    /// <summary>SIGKILL of the server and its sandboxes: nothing gets a chance to finish.</summary>
    public void Kill()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
        }
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        _process?.Dispose();
        return ValueTask.CompletedTask;
    }

    private Process Launch(IReadOnlyDictionary<string, string> environment, string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(_dll);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }

        var process = Process.Start(start)!;
        var log = TextWriter.Synchronized(new StreamWriter(_log, append: true) { AutoFlush = true });
        log.WriteLine($"--- {DateTime.UtcNow:O} dotnet {string.Join(' ', start.ArgumentList)} (pid {process.Id})");
        process.OutputDataReceived += (_, e) => Write(log, e.Data);
        process.ErrorDataReceived += (_, e) => Write(log, e.Data);
        process.Exited += (_, _) => log.Dispose();
        process.EnableRaisingEvents = true;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static void Write(TextWriter log, string? line)
    {
        if (line is null)
        {
            return;
        }

        try
        {
            log.WriteLine(line);
        }
        catch (ObjectDisposedException)
        {
            // The last lines of a killed process can arrive after its exit.
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
