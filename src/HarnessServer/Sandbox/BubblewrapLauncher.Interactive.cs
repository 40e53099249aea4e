using System.Diagnostics;

namespace HarnessServer.Sandbox;

internal sealed partial class BubblewrapLauncher
{
    /// <summary>
    /// Starts <paramref name="command"/> in the same sandbox <see cref="RunAsync"/> builds (no network, read-only root,
    /// the workspace as the only writable host folder, the same limits), but keeps its stdin and stdout open for the
    /// caller to talk over: an MCP stdio server. The caller disposes it, which kills the sandbox.
    /// </summary>
    public async Task<SandboxedProcess> StartAsync(SandboxCommand command)
    {
        var timeout = Validate(command);
        // The same control group per sandbox as RunAsync, released when the conversation ends.
        var group = groups.Create();
        try
        {
            var process = new Process { StartInfo = StartInfo(command, timeout, group) };
            await ForkThread.StartAsync(process);
            return new SandboxedProcess(process, group);
        }
        catch
        {
            group?.Release();
            throw;
        }
    }
}

/// <summary>A running sandbox whose stdin and stdout are a conversation; disposing it kills the whole sandbox.</summary>
internal sealed class SandboxedProcess : IAsyncDisposable
{
    private const int KeptErrorBytes = 16 * 1024;
    private readonly Process _process;
    private readonly CallGroup? _group;
    private readonly Task<string> _errors;

    public SandboxedProcess(Process process, CallGroup? group)
    {
        _process = process;
        _group = group;
        _errors = DrainAsync(process.StandardError.BaseStream);
    }

    public Stream Input => _process.StandardInput.BaseStream;
    public Stream Output => _process.StandardOutput.BaseStream;

    /// <summary>The first bytes the program wrote to stderr (the rest is read and dropped so it never blocks).</summary>
    public async Task<string> ErrorsAsync()
    {
        var done = await Task.WhenAny(_errors, Task.Delay(TimeSpan.FromSeconds(1)));
        return done == _errors ? await _errors : "";
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // It had exited already.
        }

        await _process.WaitForExitAsync(CancellationToken.None);
        _process.Dispose();
        _group?.Release();
    }

    private static async Task<string> DrainAsync(Stream stream)
    {
        using var kept = new MemoryStream();
        var buffer = new byte[8192];
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            kept.Write(buffer, 0, (int)Math.Min(read, Math.Max(0, KeptErrorBytes - kept.Length)));
        }

        return System.Text.Encoding.UTF8.GetString(kept.GetBuffer().AsSpan(0, (int)kept.Length));
    }
}
