using HarnessServer.Policies;
using static HarnessServer.Tests.Policies.PolicyTesting;

namespace HarnessServer.Tests.Policies;

/// <summary>
/// The small policy set the shell corpus is decided under: what an admin would naturally allow a coding agent,
/// with asks for deleting and resetting and denies for network and destructive commands.
/// </summary>
internal static class ShellCorpus
{
    public const string OrgPolicy = """
        default: deny
        rules:
          - tool: shell.exec
            effect: allow
            args:
              command: ["ls", "ls *", "cat *", "echo *", "pwd", "grep *", "rg *", "head *", "tail *", "wc *", "find *",
                        "sed *", "awk *", "sort *", "uniq *", "cut *", "tr *", "diff *", "git *", "python3 *", "pytest*",
                        "npm test*", "npm run *", "npm install*", "node *", "dotnet build*", "dotnet test*", "cargo build*",
                        "cargo test*", "go test *", "go build *", "make test", "sh build.sh", "tar *", "mkdir *", "cp *",
                        "mv *", "cd *", "which *", "jq *", "test *", "true", "date*", "du *", "stat *", "file *",
                        "basename *", "dirname *", "realpath *", "printf *", "tee *", "chmod *", "xargs grep *",
                        "timeout *", "zip *", "unzip *", "env", "whoami", "uname *", "sha256sum *", "tree*", "less *"]
          - tool: shell.exec
            effect: ask
            args: { command: ["rm *", "git reset --hard*", "git clean*"] }
          - tool: shell.exec
            effect: deny
            args: { command: ["rm -rf *", "curl *", "wget *", "git push*", "sudo *"] }
            reason: "destructive or network commands are never run"
        """;

    public static readonly PolicyResolver Resolver = Compile(OrgPolicy).For("agent", []);

    /// <summary>A tenant whose org allows every tool: the admin allowed everything, so every line runs.</summary>
    public static readonly PolicyResolver AllowAll = Compile("""
        default: deny
        rules:
          - tool: "*"
            effect: allow
        """).For("agent", []);
}
