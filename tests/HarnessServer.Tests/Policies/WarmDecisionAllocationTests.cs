using HarnessServer.Policies;
using static HarnessServer.Tests.Policies.PolicyTesting;

namespace HarnessServer.Tests.Policies;

/// <summary>The warm path runs on every tool call; it must not allocate.</summary>
public sealed class WarmDecisionAllocationTests
{
    private static readonly PolicyResolver Resolver = Compile(
        """
        rules:
          - tool: "fs.*"
            effect: allow
            args: { path: ["src/**/*.cs", "docs/*"] }
          - tool: shell.exec
            effect: ask
        """,
        new Dictionary<string, string>
        {
            ["platform"] = """
                rules:
                  - tool: shell.exec
                    effect: allow
                    args: { command: ["git *", "dotnet test*"] }
                  - tool: "*"
                    effect: deny
                    args: { path: "secrets/**" }
                """,
        }).For("alice", ["platform"]);

    public static TheoryData<string, string, string> Calls => new()
    {
        { "fs.read", "path", "src/app/../lib/Program.cs" },
        { "fs.write", "path", "./secrets//key" },
        { "fs.read", "path", "../outside" },
        { "shell.exec", "command", "git status && dotnet test tests/x.csproj | git log" },
        { "shell.exec", "command", "git log > out" },
        { "memory.save", "namespace", "user" },
    };

    [Theory]
    [MemberData(nameof(Calls))]
    public void Deciding_a_warm_call_allocates_nothing(string tool, string argument, string value)
    {
        var args = new Dictionary<string, string?> { [argument] = value };
        Resolver.Decide(tool, args, "/ws");

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            Resolver.Decide(tool, args, "/ws");
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
