using HarnessServer.Sandbox;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace HarnessServer.Tests.Sandbox;

/// <summary>A throwaway workspaces root under /tmp and a real bubblewrap sandbox over it.</summary>
public sealed class SandboxFixture : IDisposable
{
    public SandboxFixture()
    {
        Options = new SandboxOptions { MaxOutputBytes = 64 * 1024, MaxFileBytes = 1024 * 1024, MaxReadBytes = 64 * 1024, MaxProcesses = 32, GroupMemoryBytes = 256L * 1024 * 1024 };
        Root = new WorkspaceRoot(Path.Combine(Path.GetTempPath(), $"harness-sandbox-tests-{Guid.NewGuid():N}"), Options);
        var options = Microsoft.Extensions.Options.Options.Create(Options);
        Groups = new ControlGroups(options, NullLogger<ControlGroups>.Instance);
        var launcher = new BubblewrapLauncher(options, Groups, NullLogger<BubblewrapLauncher>.Instance);
        Probe = new SandboxProbe(Microsoft.Extensions.Options.Options.Create(Options), Root, launcher, NullLogger<SandboxProbe>.Instance);
        Sandbox = new BubblewrapSandbox(Probe, launcher);
    }

    internal SandboxOptions Options { get; }

    internal ControlGroups Groups { get; }
    internal WorkspaceRoot Root { get; }
    internal SandboxProbe Probe { get; }
    internal BubblewrapSandbox Sandbox { get; }

    /// <summary>The sandbox users of the fixture's tenants, as <see cref="TenantSandboxUsers"/> would give them.</summary>
    internal static SandboxUser UserOf(string tenant) => tenant switch
    {
        "acme" => TenantSandboxUsers.UserAt(300_000, 1),
        "globex" => TenantSandboxUsers.UserAt(300_000, 2),
        "initech" => TenantSandboxUsers.UserAt(300_000, 3),
        _ => throw new ArgumentOutOfRangeException(nameof(tenant), tenant, "The sandbox fixture knows acme, globex and initech."),
    };

    internal Workspace NewWorkspace(string tenant = "acme") => Root.Create(tenant, Guid.NewGuid().ToString("N"), UserOf(tenant));

    internal Task<SandboxResult> ShellAsync(Workspace workspace, string command, int? timeoutSeconds = null,
        IReadOnlyDictionary<string, string>? environment = null) =>
        Sandbox.RunAsync(new SandboxCommand
        {
            WorkspacePath = workspace.FullPath,
            User = workspace.Owner,
            Command = command,
            TimeoutSeconds = timeoutSeconds,
            Environment = environment,
        }, CancellationToken.None);

    public void Dispose()
    {
        Groups.Dispose();
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
