using System.CommandLine;
using System.Net;
using System.Net.Http.Headers;
using HarnessServer.Cli.Auth;
using HarnessServer.Cli.Commands;
using HarnessServer.Client;

namespace HarnessServer.Cli;

/// <summary>The <c>harness</c> command tree: each command group in Commands/, each calling the typed client.</summary>
/// <remarks>Public for the tests, which run the command line in-process against a real server.</remarks>
public static class HarnessCli
{
    internal static readonly Option<string?> Server = new("--server")
    {
        Description = "The server's URL (default: $HARNESS_SERVER, else http://127.0.0.1:5080).",
        Recursive = true,
    };

    internal static readonly Option<bool> Json = new("--json")
    {
        Description = "Print the server's answers as JSON, for scripts.",
        Recursive = true,
    };

    public static async Task<int> RunAsync(string[] args, CliEnvironment environment, CancellationToken ct = default)
    {
        var root = new RootCommand("harness: sessions, tool calls, approvals, policies as code and the audit trail of a HarnessServer.")
        {
            Server,
            Json,
            LoginCommands.Login(environment),
            LoginCommands.Logout(environment),
            SessionCommands.Sessions(environment),
            SessionCommands.Call(environment),
            SessionCommands.Chat(environment),
            ApprovalCommands.Approvals(environment),
            PolicyCommands.Policies(environment),
            ToolCommands.Tools(environment),
            AuditCommands.Audit(environment),
            PermissionCommands.Permissions(environment),
        };
        var parsed = root.Parse(args);
        return await parsed.InvokeAsync(new InvocationConfiguration { Output = environment.Out, Error = environment.Error }, ct);
    }

    internal static Uri ServerOf(ParseResult parsed, CliEnvironment environment)
    {
        var text = parsed.GetValue(Server) ?? environment.Variable("HARNESS_SERVER") ?? "http://127.0.0.1:5080";
        if (!Uri.TryCreate(text.TrimEnd('/') + "/", UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            throw new CliException($"--server '{text}' is not an http(s) URL.");
        }

        return uri;
    }

    /// <summary>
    /// Runs one command against the server with the caller's token (HARNESS_TOKEN, else the cached login), turning
    /// what can go wrong into a message on stderr and an exit code.
    /// </summary>
    internal static async Task<int> WithClientAsync(
        ParseResult parsed, CliEnvironment environment, CancellationToken ct, Func<CommandContext, Task<int>> run)
    {
        try
        {
            var server = ServerOf(parsed, environment);
            var token = environment.Variable("HARNESS_TOKEN") is { Length: > 0 } fromEnvironment
                ? fromEnvironment
                : new TokenCache(environment.ConfigDirectory).Read(server, DateTimeOffset.UtcNow)?.AccessToken;
            if (token is null)
            {
                environment.Error.WriteLine($"error: not signed in to {server}: set HARNESS_TOKEN or run harness login.");
                return ExitCodes.NotSignedIn;
            }

            using var http = environment.HttpClient(server, TimeSpan.FromMinutes(10));
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            var context = new CommandContext(new HarnessClient(http), environment.Out, environment.Error, parsed.GetValue(Json));
            return await run(context);
        }
        catch (HarnessApiException e)
        {
            var (code, title, detail) = e.Describe();
            environment.Error.WriteLine($"error: {e.StatusCode} {title ?? "the server refused"}{(code is null ? "" : $" ({code})")}: {detail ?? e.Response}");
            return e.StatusCode == (int)HttpStatusCode.Unauthorized ? ExitCodes.NotSignedIn : ExitCodes.Failed;
        }
        catch (HttpRequestException e)
        {
            environment.Error.WriteLine($"error: cannot reach the server: {e.Message}");
            return ExitCodes.Failed;
        }
        catch (CliException e)
        {
            environment.Error.WriteLine($"error: {e.Message}");
            return e.ExitCode;
        }
    }
}

/// <summary>What a command runs with: the signed-in client, the output streams and whether to print JSON.</summary>
internal sealed record CommandContext(HarnessClient Client, TextWriter Out, TextWriter Error, bool Json)
{
    /// <summary>Prints <paramref name="value"/> as JSON under --json, else the plain lines <paramref name="plain"/> writes.</summary>
    public void Print(object? value, Action<TextWriter> plain)
    {
        if (Json)
        {
            CliJson.Write(Out, value);
        }
        else
        {
            plain(Out);
        }
    }
}

/// <summary>Input the command cannot use, or a state it stops at, with the exit code that says which.</summary>
internal sealed class CliException(string message, int exitCode = ExitCodes.Failed) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}
