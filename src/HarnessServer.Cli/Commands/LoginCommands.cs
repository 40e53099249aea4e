using System.CommandLine;
using System.Net.Http.Headers;
using HarnessServer.Cli.Auth;
using HarnessServer.Client;

namespace HarnessServer.Cli.Commands;

internal static class LoginCommands
{
    public static Command Login(CliEnvironment environment)
    {
        var issuer = new Option<string?>("--issuer") { Description = "The OIDC issuer (default: $HARNESS_ISSUER)." };
        var clientId = new Option<string?>("--client-id") { Description = "The issuer's public client for this tool (default: $HARNESS_CLIENT_ID, else harness-cli)." };
        var scope = new Option<string>("--scope") { Description = "Scopes to ask for.", DefaultValueFactory = _ => "openid profile" };
        var command = new Command("login", "Sign in with the OIDC device-code flow; the token is cached (0600) under the user's config folder.")
        {
            issuer, clientId, scope,
        };
        command.SetAction(async (parsed, ct) =>
        {
            try
            {
                var server = HarnessCli.ServerOf(parsed, environment);
                var authority = parsed.GetValue(issuer) ?? environment.Variable("HARNESS_ISSUER")
                    ?? throw new CliException("--issuer (or HARNESS_ISSUER) names the OIDC issuer to sign in with.");
                if (!Uri.TryCreate(authority, UriKind.Absolute, out var issuerUri))
                {
                    throw new CliException($"--issuer '{authority}' is not a URL.");
                }

                using var http = environment.HttpClient(server, TimeSpan.FromSeconds(30));
                var login = new DeviceLogin(http, environment.Error, TimeProvider.System);
                var (token, expires) = await login.SignInAsync(issuerUri,
                    parsed.GetValue(clientId) ?? environment.Variable("HARNESS_CLIENT_ID") ?? "harness-cli", parsed.GetValue(scope)!, ct);

                // Only a token this server accepts is kept.
                http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
                var me = await new HarnessClient(http).GetMeAsync(ct);
                var cache = new TokenCache(environment.ConfigDirectory);
                cache.Write(new CachedToken(server.ToString(), token, expires));
                var context = new CommandContext(new HarnessClient(http), environment.Out, environment.Error, parsed.GetValue(HarnessCli.Json));
                context.Print(me, o => o.WriteLine($"Signed in to {server} as {me.User} (tenant {me.Tenant}); token cached in {cache.FilePath} until {expires:u}."));
                return ExitCodes.Ok;
            }
            catch (LoginException e)
            {
                environment.Error.WriteLine($"error: {e.Message}");
                return ExitCodes.NotSignedIn;
            }
            catch (CliException e)
            {
                environment.Error.WriteLine($"error: {e.Message}");
                return e.ExitCode;
            }
            catch (HarnessApiException e)
            {
                environment.Error.WriteLine($"error: the server did not accept the token ({e.StatusCode}): {e.Describe().Detail}");
                return ExitCodes.NotSignedIn;
            }
            catch (HttpRequestException e)
            {
                environment.Error.WriteLine($"error: cannot reach the issuer or the server: {e.Message}");
                return ExitCodes.Failed;
            }
        });
        return command;
    }

    public static Command Logout(CliEnvironment environment)
    {
        var command = new Command("logout", "Delete the cached token.");
        command.SetAction(_ =>
        {
            var removed = new TokenCache(environment.ConfigDirectory).Delete();
            environment.Out.WriteLine(removed ? "Signed out: the cached token is deleted." : "No cached token.");
            return ExitCodes.Ok;
        });
        return command;
    }
}
