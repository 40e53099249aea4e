using HarnessServer.Sandbox;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace HarnessServer.Tests.Sandbox;

/// <summary>A throwaway workspaces root under /tmp and a real bubblewrap sandbox over it.</summary>
public sealed class SandboxFixture : IDisposable
{
    public SandboxFixture()
    {
        Options = new SandboxOptions { MaxOutputBytes = 64 * 1024, MaxFileBytes = 1024 * 1024, MaxReadBytes = 64 * 1024, MaxProcesses = 32 };
        Root = new WorkspaceRoot(Path.Combine(Path.GetTempPath(), $"harness-sandbox-tests-{Guid.NewGuid():N}"), Options);
        var launcher = new BubblewrapLauncher(Microsoft.Extensions.Options.Options.Create(Options), NullLogger<BubblewrapLauncher>.Instance);
        Probe = new SandboxProbe(Microsoft.Extensions.Options.Options.Create(Options), Root, launcher, NullLogger<SandboxProbe>.Instance);
        Sandbox = new BubblewrapSandbox(Probe, launcher);
    }

    internal SandboxOptions Options { get; }
    internal WorkspaceRoot Root { get; }
    internal SandboxProbe Probe { get; }
    internal BubblewrapSandbox Sandbox { get; }

    internal Workspace NewWorkspace(string tenant = "acme") => Root.Create(tenant, Guid.NewGuid().ToString("N"));

    internal Task<SandboxResult> ShellAsync(Workspace workspace, string command, int? timeoutSeconds = null,
        IReadOnlyDictionary<string, string>? environment = null) =>
        Sandbox.RunAsync(new SandboxCommand
        {
            WorkspacePath = workspace.FullPath,
            Command = command,
            TimeoutSeconds = timeoutSeconds,
            Environment = environment,
        }, CancellationToken.None);

    public void Dispose()
    {
        if (Directory.Exists(Root.FullPath))
        {
            Directory.Delete(Root.FullPath, recursive: true);
        }
    }
}

/// <summary>One fixture for every sandbox test class; the classes still run in parallel with the rest of the suite.</summary>
[CollectionDefinition(Name)]
public sealed class SandboxCollection : ICollectionFixture<SandboxFixture>
{
    public const string Name = "Sandbox";
}
